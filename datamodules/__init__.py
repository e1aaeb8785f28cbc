"""Dataset modules of UMT (``umt.datamodules``): each registered in the ``umt.datamodules`` entry-point group."""
