"""``python tests/gcs_emulator.py start --host 127.0.0.1 --port P --in-memory``: the
gcp-storage-emulator server (a real GCS JSON-API server, pure Python) with the object
generation headers a media download from GCS carries (``x-goog-generation``,
``x-goog-metageneration``). The emulator leaves them out, and tensorstore (orbax's OCDBT
checkpoints) reads an object's generation from them: without them every read of a
checkpoint's manifest fails with "Malformed StorageGeneration"."""

from __future__ import annotations

import sys

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):  # noqa: ANN001, ANN201
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj["metageneration"])
    except NotFound:
        pass  # the emulator's own handler answers 404
    return _download(request, response, storage, *args, **kwargs)


objects.download = download  # before the server module binds its routes

if __name__ == "__main__":
    from gcp_storage_emulator.__main__ import main

    sys.exit(main(sys.argv[1:]))
