"""``tiercache bench``: the command, its report and the workloads it runs (``cli``, ``report``, ``workloads``)."""
