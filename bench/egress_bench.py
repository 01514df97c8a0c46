#!/usr/bin/env python3
"""egress_bench: what coved's egress proxy costs, against direct access and a
peer forward proxy (Debian's tinyproxy), in one run, in throw-away network
namespaces (tests/e2e/netlab: nothing leaves the machine).

  upstream: nginx in the fake internet (198.51.100.20, bench.test), 1 KiB and 1 MiB bodies
  direct:      wrk in coved's namespace -> nginx
  tinyproxy:   wrk in coved's namespace -> tinyproxy (explicit proxy) -> nginx
  coved explicit:    wrk in a sandbox -> coved's explicit proxy (HTTP_PROXY) -> nginx
  coved transparent: wrk in a sandbox -> bench.test:80/443, redirected by the firewall -> nginx
  coved intercepted: HTTPS to bench.test with a rule injecting a secret header (TLS terminated
                     with coved's CA, re-encrypted to nginx)
  preview URL:       wrk in coved's namespace -> coved's preview listener -> nginx inside the
                     sandbox, against the same wrk straight to the sandbox's address
  tunnel:            one large download (curl, 256 MiB) through tunnels coved does not
                     intercept: raw TCP (port 8080, a rule listing it), transparent TLS and
                     CONNECT, each right after the same download direct; medians of 5 pairs,
                     and coved's CPU time (user + system) per GiB tunnelled

Latency: one connection (p50 / p99 from wrk --latency); throughput: 16
connections. --io-threads N[,M...] runs this build's coved once per value
(--io-threads N), to compare io thread counts in one sitting (default: coved's
own default). Keep-alive, and a new connection per request (Connection: close).
Every coved row runs twice, against a baseline coved (--baseline PATH; default
/work/wt-base/build/bin/coved when it exists; "none" skips it) and then this
build's, each with a fresh state dir and sandbox, so the table shows before/after.
Needs root, nginx-light, tinyproxy and wrk:
  apt-get install nginx-light tinyproxy wrk && python3 bench/egress_bench.py [--seconds 5] [--baseline PATH]
"""

import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import helpers  # noqa: E402
from helpers import Api, Coved, make_base_dir  # noqa: E402
from netlab.lab import NetLab  # noqa: E402

SECONDS = int(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 5
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""  # 1k, 1m, https, preview or tunnel
BIG_MB = 256
DOWNLOADS = 5  # pairs (direct, tunnelled) per tunnel; medians reported
_DEFAULT_BASELINE = "/work/wt-base/build/bin/coved"
BASELINE = (sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv
            else _DEFAULT_BASELINE if os.path.exists(_DEFAULT_BASELINE) else "none")
IO_THREADS = (sys.argv[sys.argv.index("--io-threads") + 1].split(",") if "--io-threads" in sys.argv else [""])

NGINX_CONF = """
worker_processes 2; pid {dir}/nginx.pid; error_log {dir}/nginx.err; daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  server {{
    listen 198.51.100.20:80; listen 198.51.100.20:443 ssl; listen 198.51.100.20:8080;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location = /1k {{ return 200 "{body}"; }}
    location /1m {{ root {dir}; }}
    location /big {{ root {dir}; }}
  }}
}}
"""

SANDBOX_NGINX = """
worker_processes 1; pid /tmp/nginx.pid; error_log /tmp/nginx.err; daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path /tmp; proxy_temp_path /tmp; fastcgi_temp_path /tmp; uwsgi_temp_path /tmp; scgi_temp_path /tmp;
  server {{ listen 8080; location = /1k {{ return 200 "{body}"; }} }}
}}
"""

TINYPROXY_CONF = """
Port 8888
Listen 127.0.0.1
Timeout 600
MaxClients 256
LogLevel Critical
DisableViaHeader Yes
"""

# wrk sends origin-form requests; a forward proxy needs absolute-form.
# tinyproxy gets the address (its namespace has no DNS for bench.test), coved the name.
ABSOLUTE_FORM = 'wrk.path = "http://{host}{path}"\nwrk.headers["Host"] = "{host}"\n'


def parse_wrk(out):
    def ms(text):
        v, unit = float(re.match(r"([\d.]+)(\w+)", text).group(1)), re.match(r"[\d.]+(\w+)", text).group(1)
        return v * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    if "Requests/sec" not in out:
        raise RuntimeError("wrk failed: " + out[-500:])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    mbs = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[mbs.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return {"p50": ms(lat["50"]), "p99": ms(lat["99"]), "rps": rps, "mbs": float(mbs.group(1)) * scale,
            "errors": errors.group(0) if errors else ""}


def coved_cpu(coved):
    """coved's CPU seconds so far (user + system, all threads)."""
    with open(f"/proc/{coved.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    base = make_base_dir("cove-egress-bench-")
    lab = NetLab(base).up()
    procs = []
    c = None
    try:
        with open(os.path.join(base, "1m"), "wb") as f:
            f.write(os.urandom(1 << 20))
        with open(os.path.join(base, "big"), "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(BIG_MB):
                f.write(chunk)
        with open(os.path.join(base, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=base, cert=lab.world_cert, key=lab.world_key, body="x" * 1024))
        procs.append(subprocess.Popen(["ip", "netns", "exec", lab.world, "nginx", "-c", os.path.join(base, "nginx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        with open(os.path.join(base, "tinyproxy.conf"), "w") as f:
            f.write(TINYPROXY_CONF)
        procs.append(subprocess.Popen(["ip", "netns", "exec", lab.lab, "tinyproxy", "-d", "-c",
                                       os.path.join(base, "tinyproxy.conf")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        builds = ([("baseline" + (f", {n} io threads" if n else ""), BASELINE, n) for n in IO_THREADS]
                  if BASELINE != "none" else [])
        builds += [("this build" + (f", {n} io threads" if n else ""), helpers.COVED, n) for n in IO_THREADS]
        rows = []
        downloads = []  # (label, path, MB/s)
        for label, binary, io_threads in builds:
            helpers.COVED = binary
            state = os.path.join(base, "state-" + re.sub(r"[^a-z0-9]+", "-", label))
            c = Coved(state, state + ".log", host=lab.lab_addr,
                      prefix=lab.nsenter(), args=["--dns-server", lab.WORLD_DNS, "--upstream-ca", lab.ca_cert] +
                      (["--io-threads", io_threads] if io_threads else []))
            c.start()
            api = Api(c)
            sid = "egress-bench"
            api.create(id=sid, instanceType="standard-3")
            proxy = api.exec(sid, "echo $HTTP_PROXY", session="__DISABLE_SESSION__")["stdout"].strip()
            for size in ("1k", "1m"):
                with open(os.path.join(base, f"abs{size}.lua"), "w") as f:
                    f.write(ABSOLUTE_FORM.format(host="198.51.100.20", path="/" + size))
            time.sleep(0.5)

            def in_lab(args):
                p = subprocess.run(["ip", "netns", "exec", lab.lab, "wrk"] + args, capture_output=True, text=True)
                return p.stdout + p.stderr

            def in_sandbox(args):
                cmd = "wrk " + " ".join(f"'{a}'" for a in args)
                return api.exec(sid, cmd, session="__DISABLE_SESSION__", timeout=SECONDS * 4 + 60)["stdout"]

            def paths(size):
                return {
                    "direct": (in_lab, [], "http://198.51.100.20/" + size),
                    "tinyproxy (explicit)": (in_lab, ["-s", os.path.join(base, f"abs{size}.lua")], "http://127.0.0.1:8888"),
                    "coved explicit": (in_sandbox, None, None),  # filled below: the script is written into the sandbox
                    "coved transparent": (in_sandbox, [], "http://bench.test/" + size),
                }

            for size in [x for x in ("1k", "1m") if ONLY in ("", x)]:
                for keep in (True, False):
                    for name, (runner, extra, url) in paths(size).items():
                        if name == "coved explicit":
                            # The sandbox cannot see the host's files: the script goes in through the API.
                            api.call(sid, "write", {"path": f"/tmp/abs{size}.lua",
                                                    "content": ABSOLUTE_FORM.format(host="bench.test", path="/" + size)})
                            extra, url = ["-s", f"/tmp/abs{size}.lua"], proxy
                        hdr = [] if keep else ["-H", "Connection: close"]
                        lat = parse_wrk(runner(["--latency", "-t1", "-c1", f"-d{SECONDS}s"] + hdr + extra + [url]))
                        thr = parse_wrk(runner(["--latency", "-t2", "-c16", f"-d{SECONDS}s"] + hdr + extra + [url]))
                        rows.append((label, size, "keep-alive" if keep else "new connection", name, lat, thr))
            # HTTPS: tunnelled untouched by coved (SNI checked), then intercepted with a
            # header injected from a secret, against direct.
            def https_rows(name, runner, url):
                for keep in (True, False):
                    hdr = [] if keep else ["-H", "Connection: close"]
                    lat = parse_wrk(runner(["--latency", "-t1", "-c1", f"-d{SECONDS}s"] + hdr + [url]))
                    thr = parse_wrk(runner(["--latency", "-t2", "-c16", f"-d{SECONDS}s"] + hdr + [url]))
                    rows.append((label, "1k https", "keep-alive" if keep else "new connection", name, lat, thr))
            if ONLY in ("", "https"):
                https_rows("direct", in_lab, "https://198.51.100.20/1k")
                https_rows("coved transparent (TLS tunnelled)", in_sandbox, "https://bench.test/1k")
                r = api.request("PUT", "/v1/secrets/BENCH_TOKEN", json_body={"value": "bench-secret-value"})
                assert r.status_code == 200, r.text
                r = api.request("PUT", f"/v1/sandboxes/{sid}/egress", json_body={
                    "rules": [{"host": "bench.test", "setHeaders": {"Authorization": "Bearer {{secret.BENCH_TOKEN}}"}}]})
                assert r.status_code == 200, r.text
                https_rows("coved intercepted + injected header", in_sandbox, "https://bench.test/1k")
                api.request("DELETE", f"/v1/sandboxes/{sid}/egress")

            # Preview URL: nginx inside the sandbox, reached through coved's preview listener.
            if ONLY in ("", "preview"):
                api.call(sid, "write", {"path": "/tmp/nginx.conf", "content": SANDBOX_NGINX.format(body="x" * 1024)})
                api.exec(sid, "nginx -c /tmp/nginx.conf >/dev/null 2>&1 &", session="srv")
                time.sleep(1)
                exposed = api.request("POST", f"/v1/sandboxes/{sid}/ports", json_body={"port": 8080}).json()
                host = exposed["url"].split("//", 1)[1].split(":", 1)[0]
                eth0 = proxy[len("http://"):].rsplit(":", 1)[0].split(".")
                sandbox_addr = ".".join(eth0[:3] + [str(int(eth0[3]) + 1)])
                for keep in (True, False):
                    hdr = [] if keep else ["-H", "Connection: close"]
                    for name, url, extra in (("direct to the sandbox's port", f"http://{sandbox_addr}:8080/1k", []),
                                             ("preview URL", f"http://{lab.lab_addr}:{c.preview_port}/1k", ["-H", f"Host: {host}"])):
                        lat = parse_wrk(in_lab(["--latency", "-t1", "-c1", f"-d{SECONDS}s"] + hdr + extra + [url]))
                        thr = parse_wrk(in_lab(["--latency", "-t2", "-c16", f"-d{SECONDS}s"] + hdr + extra + [url]))
                        rows.append((label, "preview 1k", "keep-alive" if keep else "new connection", name, lat, thr))

            # One large download through tunnels coved does not intercept.
            if ONLY in ("", "tunnel"):
                def speed(run, args):
                    out = run(["curl", "-sk", "-o", "/dev/null", "-w", "%{speed_download}"] + args)
                    return float(out.strip().split()[-1]) / 1e6

                def curl_lab(args):
                    return subprocess.run(["ip", "netns", "exec", lab.lab] + args, capture_output=True, text=True).stdout

                def curl_sandbox(args):
                    cmd = " ".join(f"'{a}'" for a in args)
                    return api.exec(sid, cmd, session="__DISABLE_SESSION__", timeout=600)["stdout"]

                r = api.request("PUT", f"/v1/sandboxes/{sid}/egress",
                                json_body={"rules": [{"host": "bench.test", "ports": [8080]}]})
                assert r.status_code == 200, r.text
                # Each tunnelled download right after the direct one it is compared
                # with, so that load from elsewhere taxes both alike.
                plain, tls = ["http://198.51.100.20:8080/big"], ["https://198.51.100.20/big"]
                for name, direct_args, args in (
                        ("raw TCP tunnel (port 8080)", plain, ["http://bench.test:8080/big"]),
                        ("transparent TLS tunnel", tls, ["https://bench.test/big"]),
                        ("CONNECT tunnel", tls, ["--proxy", proxy, "https://bench.test/big"])):
                    pairs, cpu = [], 0.0
                    for _ in range(DOWNLOADS):
                        direct = speed(curl_lab, direct_args)
                        before = coved_cpu(c)
                        tunnelled = speed(curl_sandbox, args)
                        cpu += coved_cpu(c) - before
                        pairs.append((direct, tunnelled))
                    median = lambda xs: sorted(xs)[len(xs) // 2]
                    downloads.append((label, name, median([d for d, _ in pairs]), median([t for _, t in pairs]),
                                      median([t / d for d, t in pairs]), cpu / (BIG_MB * DOWNLOADS / 1024)))
                api.request("DELETE", f"/v1/sandboxes/{sid}/egress")

            for s in api.list_ids():
                api.delete(f"/v1/sandboxes/{s}")
            c.stop()
            c = None
            time.sleep(60 if label != builds[-1][0] else 0)  # TIME_WAITs of one build do not tax the next
        print(f"| coved | body | connections | path | p50 ms (1 conn) | p99 ms (1 conn) | req/s (16 conns) | MB/s (16 conns) | vs direct |")
        print("|---|---|---|---|---|---|---|---|---|")
        direct = {}
        for label, size, mode, name, lat, thr in rows:
            if name.startswith("direct"):
                direct[(label, size, mode)] = (lat, thr)
            d_lat, d_thr = direct[(label, size, mode)]
            rel = "" if name.startswith("direct") else f"+{lat['p50'] - d_lat['p50']:.3f} ms p50, {100 * thr['rps'] / d_thr['rps']:.0f}% req/s"
            err = f" ({lat['errors'] or thr['errors']})" if (lat['errors'] or thr['errors']) else ""
            print(f"| {label} | {size} | {mode} | {name}{err} | {lat['p50']:.3f} | {lat['p99']:.3f} | {thr['rps']:.0f} | "
                  f"{thr['mbs']:.1f} | {rel} |")
        if downloads:
            print()
            print(f"| coved | one {BIG_MB} MiB download through | MB/s direct | MB/s tunnelled | tunnelled / direct | coved CPU s per GiB |")
            print("|---|---|---|---|---|---|")
            for label, name, direct, tunnelled, ratio, cpu in downloads:
                print(f"| {label} | {name} | {direct:.0f} | {tunnelled:.0f} | {100 * ratio:.0f}% | {cpu:.2f} |")
    finally:
        if c:
            for s in api.list_ids():
                api.delete(f"/v1/sandboxes/{s}")
            c.stop()
        for p in procs:  # nginx's workers are in its process group
            os.killpg(p.pid, 9) if p.poll() is None else None
            p.wait()
        lab.down()


if __name__ == "__main__":
    main()
