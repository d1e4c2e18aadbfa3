"""The ``mmjax`` command: ``app`` (parser, ``train``, ``info``, ``convert``, ``compile``)
and one module per other sub-command (``eval``, ``export``, ``predict``, ``plot``)."""
