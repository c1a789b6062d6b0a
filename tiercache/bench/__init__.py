"""``tiercache bench``: the command (``cli``), its report and the workloads it runs."""
