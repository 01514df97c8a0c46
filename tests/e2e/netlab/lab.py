"""NetLab: network namespaces of the test's own, so that no packet of a
network test can leave the machine even when sealing is broken.

  host netns (pytest) --veth 192.0.2.x/30-- "lab" netns (coved, its sandboxes)
                                           --veth 198.51.100.0/24-- "world" netns (world.py)

coved runs in `lab` (through nsenter, so only its network differs) and
listens on the lab side of the first link; the only other peer of `lab` is
`world`, the fake internet of world.py on documentation addresses. The same
harness is how a developer tries coved's networking by hand:

    sudo python3 -m netlab.lab   (from tests/e2e; prints the commands to use, Ctrl-C tears down)
"""

import os
import secrets
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*cmd, ns=None, check=True):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p


class NetLab:
    WORLD_DNS = "198.51.100.53"

    def __init__(self, workdir):
        tag = secrets.token_hex(3)
        self.lab = f"cove-lab-{tag}"
        self.world = f"cove-world-{tag}"
        self.host_if = f"cvlab{tag}"[:15]
        k = secrets.randbelow(60) + 1
        self.host_addr = f"192.0.2.{4 * k + 1}"
        self.lab_addr = f"192.0.2.{4 * k + 2}"
        self.workdir = workdir
        self.world_proc = None
        self.ca_cert = os.path.join(workdir, "world-ca.pem")
        self.world_log = os.path.join(workdir, "world.jsonl")
        self.git_root = os.path.join(workdir, "git")  # served as http://git.test/

    @property
    def netns_path(self):
        return f"/run/netns/{self.lab}"

    def up(self):
        sh("ip", "netns", "add", self.lab)
        sh("ip", "netns", "add", self.world)
        for ns in (self.lab, self.world):
            sh("ip", "link", "set", "lo", "up", ns=ns)
        # host <-> lab
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "uplink", "netns", self.lab)
        sh("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        sh("ip", "addr", "add", f"{self.lab_addr}/30", "dev", "uplink", ns=self.lab)
        sh("ip", "link", "set", "uplink", "up", ns=self.lab)
        # lab <-> world
        sh("ip", "link", "add", "inet", "netns", self.lab, "type", "veth", "peer", "name", "eth0", "netns", self.world)
        sh("ip", "addr", "add", "198.51.100.1/24", "dev", "inet", ns=self.lab)
        sh("ip", "link", "set", "inet", "up", ns=self.lab)
        for last in (10, 11, 12, 13, 14, 20, 53):
            sh("ip", "addr", "add", f"198.51.100.{last}/24", "dev", "eth0", ns=self.world)
        sh("ip", "link", "set", "eth0", "up", ns=self.world)
        self._make_certs()
        os.makedirs(self.git_root, exist_ok=True)
        self.world_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.world, sys.executable, os.path.join(HERE, "world.py"),
             self.world_cert, self.world_key, self.world_log, self.git_root],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.world_proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"world.py did not start: {line}{self.world_proc.stdout.read()}")
        return self

    def _make_certs(self):
        ca_key = os.path.join(self.workdir, "world-ca.key")
        self.world_key = os.path.join(self.workdir, "world.key")
        self.world_cert = os.path.join(self.workdir, "world.pem")
        csr = os.path.join(self.workdir, "world.csr")
        ext = os.path.join(self.workdir, "world.ext")
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", ca_key, "-out", self.ca_cert, "-days", "2", "-subj", "/CN=cove test world CA")
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", self.world_key, "-out", csr, "-subj", "/CN=tls.test")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:tls.test,DNS:api.tls.test,DNS:bench.test,IP:198.51.100.11,IP:198.51.100.20\n")
        sh("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", ca_key, "-CAcreateserial",
           "-out", self.world_cert, "-days", "2", "-extfile", ext)

    def nsenter(self):
        """Command prefix that runs a program in the lab's network namespace only."""
        return ["nsenter", f"--net={self.netns_path}"]

    def world_requests(self):
        try:
            with open(self.world_log) as f:
                import json
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def down(self):
        if self.world_proc:
            self.world_proc.kill()
            self.world_proc.wait(10)
        sh("ip", "link", "del", self.host_if, check=False)
        for ns in (self.lab, self.world):
            sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    import tempfile
    d = tempfile.mkdtemp(prefix="cove-netlab-")
    lab = NetLab(d).up()
    print(f"lab netns {lab.lab}, world netns {lab.world}, CA {lab.ca_cert}")
    print(f"run coved:  {' '.join(lab.nsenter())} build/bin/coved --listen {lab.lab_addr}:7070 "
          f"--network sealed --dns-server {lab.WORLD_DNS} --upstream-ca {lab.ca_cert}")
    try:
        while True:
            time.sleep(3600)  # the lab stays up until Ctrl-C
    except KeyboardInterrupt:
        lab.down()
