"""Task heads of UMT (``umt.heads``): each registered in the ``umt.heads`` entry-point group."""
