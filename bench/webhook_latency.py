"""How long a webhook takes to arrive: the time from the end of a one-time download to the
arrival of its download.completed event at a local receiver, against an all-in-one app-server
(fresh data dir, SQLite, ports 18480/18481). Needs only python3.

usage: python3 bench/webhook_latency.py target/release/app-server 50"""
import http.server, json, os, subprocess, sys, tempfile, threading, time, statistics
import urllib.request, http.cookiejar

binary, n = sys.argv[1], int(sys.argv[2])
arrivals = {}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        arrivals.setdefault(body.get("type"), []).append((t, body))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
rx = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=rx.serve_forever, daemon=True).start()

data = tempfile.mkdtemp()
subprocess.run([binary, "--data-dir", data, "user", "add", "m"], input=b"measure-password-1\n", check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
app = subprocess.Popen([binary, "--data-dir", data, "--bind", "127.0.0.1:18480", "--download-bind", "127.0.0.1:18481",
                        "--webhooks-allow-http", "--webhooks-allow-private"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:18480"
try:
    for _ in range(100):
        try: urllib.request.urlopen(base + "/"); break
        except Exception: time.sleep(0.1)
    jar = http.cookiejar.CookieJar()
    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    def call(method, path, body=None, headers={}, raw=None):
        data_ = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers)
        r = op.open(urllib.request.Request(base + path, data=data_, method=method, headers=h))
        return json.loads(r.read() or b"null")
    csrf = call("POST", "/api/login", {"username": "m", "password": "measure-password-1"})["csrf_token"]
    H_ = {"X-CSRF-Token": csrf}
    call("POST", "/api/webhooks", {"url": f"http://127.0.0.1:{rx.server_address[1]}/", "events": ["download.completed"]}, H_)
    boundary = "xBOUNDARYx"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.bin\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode() + os.urandom(4096) + f"\r\n--{boundary}--\r\n".encode()
    fid = call("POST", "/api/files", raw=payload, headers={**H_, "Content-Type": f"multipart/form-data; boundary={boundary}"})["id"]
    lat = []
    for i in range(n):
        url = call("POST", f"/api/files/{fid}/link", {}, H_)["url"]
        before = len(arrivals.get("download.completed", []))
        urllib.request.urlopen(url).read()
        done = time.monotonic()
        while len(arrivals.get("download.completed", [])) <= before: time.sleep(0.0005)
        lat.append((arrivals["download.completed"][before][0] - done) * 1000)
    lat.sort()
    print(f"{n} downloads: download end -> webhook arrival median {statistics.median(lat):.1f} ms, "
          f"p90 {lat[int(0.9*n)-1]:.1f} ms, max {lat[-1]:.1f} ms")
finally:
    app.terminate(); app.wait()
