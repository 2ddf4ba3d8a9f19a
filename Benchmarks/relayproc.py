"""Starting a relay process for the Python benchmarks: a free loopback port, a config file in a
temporary directory, and a wait until it listens."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


_next_port = [0]


def free_port():
    """A free loopback port: any the kernel picks, or, with BENCH_PORTS=LOW-HIGH set (a range
    reserved for this run, where others run relays too), the next free one in that range."""
    span = os.environ.get("BENCH_PORTS")
    if not span:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    low, high = (int(x) for x in span.split("-"))
    for _ in range(high - low + 1):
        port = low + _next_port[0] % (high - low + 1)
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"no free port in BENCH_PORTS={span}")


def wait_listening(port, seconds=10.0):
    """Whether 127.0.0.1:port accepts a connection within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_relay(relay_bin, prefix, config_text):
    """Writes `config_text` (its `{work}` replaced by the temporary directory) and starts the
    relay with it; returns the process once the port in the config accepts connections."""
    work = tempfile.mkdtemp(prefix=prefix)
    path = os.path.join(work, "relay.yaml")
    text = config_text.replace("{work}", work)
    with open(path, "w") as f:
        f.write(text)
    port = int(text.split('listen: ["127.0.0.1:')[1].split('"')[0])
    relay = subprocess.Popen([relay_bin, "--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay.work_dir = work  # for `running_relay` to remove
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return relay
        except OSError:
            if relay.poll() is not None:
                raise SystemExit(f"the relay exited with status {relay.returncode}")
            time.sleep(0.05)
    relay.terminate()
    raise SystemExit("the relay did not listen in time")


@contextlib.contextmanager
def running_relay(relay_bin, prefix, config_text):
    """`start_relay`, stopped again when the block ends (also on error), its temporary directory
    (configuration, data) removed."""
    relay = start_relay(relay_bin, prefix, config_text)
    try:
        yield relay
    finally:
        relay.terminate()
        relay.wait(timeout=60)
        shutil.rmtree(relay.work_dir, ignore_errors=True)


def stats(port):
    """The relay's /stats as a dictionary."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        return json.load(response)


def log(text):
    print(text, file=sys.stderr, flush=True)


def proc_status(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM, ...); 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_json(cmd, timeout, env=None):
    """Runs a tool that prints one JSON line; {} (and the reason on stderr) when it does not.
    `env`: variables added to this process's environment for the tool."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired:
        log(f"timed out: {' '.join(cmd)}")
        return {}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    log(f"no result from {' '.join(cmd)}: {out.stderr.strip()[-400:]}")
    return {}
