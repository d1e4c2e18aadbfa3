"""One key table per architecture (HF key <-> mmjax path + transform)."""
