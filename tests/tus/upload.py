"""Uploads one file with tuspy, as a script would, retrying after a broken connection.

    python3 upload.py ENDPOINT TOKEN FILE CHUNK_BYTES

ENDPOINT is the server's /api/uploads, TOKEN an access token with files:write; or ENDPOINT is
an upload link's <link>/uploads and TOKEN is `-` (no account). Prints
`FILE <id>`, the file the upload became (the last answer's Burnlink-File-Id), or `DONE` through
a link (whose sender learns no file id).
"""
import os
import sys

from tusclient import client

endpoint, token, path, chunk = sys.argv[1:5]
headers = {} if token == "-" else {"Authorization": "Bearer " + token}
tus = client.TusClient(endpoint, headers=headers)
uploader = tus.uploader(
    path,
    chunk_size=int(chunk),
    metadata={"filename": os.path.basename(path)},
    # After a broken connection: ask the offset (HEAD) and carry on from there. A retry that
    # finds the cut request still holding the upload (423) tries again.
    retries=20,
    retry_delay=1,
)
uploader.upload()
file_id = uploader.request.response_headers.get("burnlink-file-id")
print("FILE " + file_id if file_id else "DONE", flush=True)
