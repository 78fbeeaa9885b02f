#!/usr/bin/env python3
"""End-to-end test of airlock-init against docs/init-protocol.md. Run as root:

    NATIVE_ROOTFS=/tmp/native-rootfs python3 tests/native/test_init.py

NATIVE_ROOTFS: a Debian rootfs with procps, iproute2, util-linux and a user uid 1000, e.g.
    unshare -m debootstrap --variant=minbase --include=procps,iproute2,util-linux \
        bookworm /tmp/native-rootfs http://deb.debian.org/debian
    chroot /tmp/native-rootfs useradd -m -u 1000 -s /bin/bash user
AIRLOCK_INIT: the airlock-init binary; if unset, the helper is built with cmake into a temp dir.
Stdlib only. Prints 'N passed, N failed' and exits nonzero on any failure.
"""
import errno
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROOTFS = os.environ.get("NATIVE_ROOTFS", "/tmp/native-rootfs")

SPAWN, SIGNAL, PING, LIST = 1, 2, 3, 4
ACK, SPAWNED, LISTED, EXIT = 100, 101, 104, 200
PTY, ROOT_CAPS, NO_NEW_PRIVS = 1, 2, 4
MSG_MAX = 256 * 1024
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C"]

# CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
# SYS_CHROOT AUDIT_WRITE SETFCAP
SANDBOX_CAPS = sum(1 << c for c in (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 29, 31))


class Client:
    """One control connection. Replies are matched by seq; EXIT events are kept aside."""

    def __init__(self, path, sndbuf=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sndbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.s.connect(path)
        self.s.settimeout(10)
        self.seq = 0
        self.exits = {}  # pid -> raw status

    def close(self):
        self.s.close()

    def _recv(self):
        data = self.s.recv(MSG_MAX + 16)
        if not data:
            raise EOFError("control socket closed")
        typ, seq = struct.unpack_from("<II", data)
        if typ == EXIT:
            pid, status = struct.unpack_from("<Ii", data, 8)
            self.exits[pid] = status
        return typ, seq, data

    def send_raw(self, msg, fds=()):
        if fds:
            socket.send_fds(self.s, [msg], list(fds))
        else:
            self.s.send(msg)

    def request(self, typ, body=b"", fds=()):
        self.seq += 1
        self.send_raw(struct.pack("<II", typ, self.seq) + body, fds)
        return self.reply(self.seq)

    def reply(self, seq):
        while True:
            rtyp, rseq, data = self._recv()
            if rtyp != EXIT and rseq == seq:
                return rtyp, data

    def wait_exit(self, pid, timeout=10):
        deadline = time.time() + timeout
        while pid not in self.exits:
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                self._recv()
            except socket.timeout:
                raise AssertionError("no EXIT for pid %d" % pid)
            finally:
                self.s.settimeout(10)
        return self.exits.pop(pid)

    def ping(self):
        typ, data = self.request(PING)
        return typ, struct.unpack_from("<i", data, 8)[0]

    def list(self):
        typ, data = self.request(LIST)
        assert typ == LISTED, typ
        (n,) = struct.unpack_from("<I", data, 8)
        return list(struct.unpack_from("<%dI" % n, data, 12))

    def signal(self, pid, signo, group=False):
        typ, data = self.request(SIGNAL, struct.pack("<IiI", pid, signo, 1 if group else 0))
        assert typ == ACK, typ
        return struct.unpack_from("<i", data, 8)[0]

    def spawn(self, argv, fds, uid=0, gid=0, flags=0, cwd="/", env=ENV):
        body = struct.pack("<IIIII", uid, gid, flags, len(argv), len(env))
        body += b"".join(s.encode() + b"\0" for s in [cwd] + list(argv) + list(env))
        typ, data = self.request(SPAWN, body, fds)
        assert typ == SPAWNED, typ
        err, pid = struct.unpack_from("<iI", data, 8)
        step = data[16:].split(b"\0", 1)[0].decode()
        return err, pid, step


def read_all(fd, timeout=10):
    out = b""
    deadline = time.time() + timeout
    while True:
        r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
        if not r:
            raise AssertionError("timeout reading child output")
        chunk = os.read(fd, 65536)
        if not chunk:
            return out
        out += chunk


def run(c, argv, **kw):
    """SPAWN argv with pipes for stdout/stderr; returns (err, step, pid, status, stdout, stderr)."""
    null = os.open("/dev/null", os.O_RDWR)
    o_r, o_w = os.pipe()
    e_r, e_w = os.pipe()
    try:
        err, pid, step = c.spawn(argv, [null, o_w, e_w], **kw)
    finally:
        for fd in (null, o_w, e_w):
            os.close(fd)  # the helper closes its copies too, so EOF comes when the child exits
    try:
        out = read_all(o_r)
        errout = read_all(e_r)
    finally:
        os.close(o_r)
        os.close(e_r)
    status = c.wait_exit(pid) if err == 0 else None
    return err, step, pid, status, out.decode(errors="replace"), errout.decode(errors="replace")


def sh(c, script, **kw):
    return run(c, ["/bin/sh", "-c", script], **kw)


def cap_fields(text):
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", text, re.M)}


def private_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        t = f.read()
    return sum(int(v) for v in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", t, re.M))


def build_init():
    """Returns (binary, temp build dir to remove or None)."""
    if os.environ.get("AIRLOCK_INIT"):
        return os.environ["AIRLOCK_INIT"], None
    bdir = tempfile.mkdtemp(prefix="airlock-native-build-")
    src = os.path.join(REPO, "src", "Airlock.Native")
    for cmd in (["cmake", "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", bdir]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print(r.stdout)
            sys.exit("build failed: %s" % " ".join(cmd))
    return os.path.join(bdir, "airlock-init"), bdir


class Sandbox:
    def __init__(self, init):
        self.init = init
        self.id = "t%d" % os.getpid()
        # The helper makes the state dir's mount points and the cgroups (with their limits) itself.
        self.state = tempfile.mkdtemp(prefix="al-")
        self.ctl = os.path.join(self.state, "ctl")
        self.cgroups = []
        self.sets = []
        for ctrl, knob, val in (("memory", "memory.limit_in_bytes", "1073741824"),
                                ("pids", "pids.max", "1024")):
            d = "/sys/fs/cgroup/%s/airlock-test/%s" % (ctrl, self.id)
            self.cgroups.append(d)  # and its parent airlock-test, if missing
            self.sets.append("%s/%s=%s" % (d, knob, val))
        self.pid = None
        self.start = None

    def launch(self):
        args = [self.init, "--id", self.id, "--lower", ROOTFS, "--state", self.state,
                "--disk-bytes", str(256 << 20), "--hostname", "sbx-test"]
        for d in self.cgroups:
            args += ["--cgroup", d]
        for s in self.sets:
            args += ["--cgroup-set", s]
        t = time.time()
        # A timeout here would mean init still holds A's stdout.
        self.start = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    timeout=15, text=True)
        self.start_seconds = time.time() - t
        m = re.fullmatch(r"ok (\d+) (\d+)\n", self.start.stdout)
        if m:
            self.pid = int(m.group(1))
        return self.start

    def cleanup(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in self.cgroups:
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            try:
                os.rmdir(os.path.dirname(d))  # airlock-test, if no other run uses it
            except OSError:
                pass
        shutil.rmtree(self.state, ignore_errors=True)


# ----------------------------------------------------------------------------- tests

def t_start(sb, c):
    r = sb.start
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert sb.pid and os.path.exists("/proc/%d" % sb.pid), r.stdout
    assert r.stderr == "", r.stderr
    print("    start took %.1f ms" % (sb.start_seconds * 1000))


def t_init_fds_and_cgroups(sb, c):
    fds = {int(f): os.readlink("/proc/%d/fd/%s" % (sb.pid, f)) for f in os.listdir("/proc/%d/fd" % sb.pid)}
    assert all(fds[i].endswith("/dev/null") for i in (0, 1, 2)), fds
    assert not any(v.startswith("pipe:") for v in fds.values()), fds  # the ready pipe is gone
    assert len(fds) <= 7, fds  # 0-2, listen socket, signalfd, epoll, this test's connection
    with open("/proc/%d/cgroup" % sb.pid) as f:
        cg = f.read()
    for ctrl in ("memory", "pids"):
        assert re.search(r":%s:/airlock-test/%s$" % (ctrl, sb.id), cg, re.M), cg
    mode = os.stat(sb.ctl).st_mode & 0o777
    assert mode == 0o600, oct(mode)
    assert os.stat(sb.state).st_mode & 0o777 == 0o700
    with open("/sys/fs/cgroup/pids/airlock-test/%s/pids.max" % sb.id) as f:
        assert f.read().strip() == "1024"
    with open("/sys/fs/cgroup/memory/airlock-test/%s/memory.limit_in_bytes" % sb.id) as f:
        assert f.read().strip() == "1073741824"
    # init.pid and the ok line: pid and start time (field 22 of /proc/<pid>/stat), mode 0600.
    with open("/proc/%d/stat" % sb.pid) as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    with open(os.path.join(sb.state, "init.pid")) as f:
        assert f.read() == "%d %s" % (sb.pid, start)
    assert sb.start.stdout == "ok %d %s\n" % (sb.pid, start), sb.start.stdout
    assert os.stat(os.path.join(sb.state, "init.pid")).st_mode & 0o777 == 0o600
    with open("/proc/self/mountinfo") as f:
        assert sb.state not in f.read(), "sandbox mounts leaked into the host namespace"


def t_ping(sb, c):
    assert c.ping() == (ACK, 0)


def t_echo(sb, c):
    err, step, pid, status, out, _ = run(c, ["/bin/echo", "hi"])
    assert err == 0 and step == "", (err, step)
    assert pid > 1, pid
    assert out == "hi\n", repr(out)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def t_execvp_path_and_env(sb, c):
    err, step, _, status, out, _ = run(c, ["sh", "-c", 'echo "$FOO $PWD"'], cwd="/tmp",
                                       env=ENV + ["FOO=bar"])
    assert err == 0, (err, step)
    assert out == "bar /tmp\n", repr(out)
    _, _, _, status, _, _ = sh(c, "exit 7")
    assert os.WEXITSTATUS(status) == 7, status


def t_exec_search(sb, c):
    """PATH comes from the request's env; a non-executable match is skipped (EACCES) as execvp does;
    a file with no #! runs under /bin/sh (execvp's ENOEXEC fallback)."""
    root = "/proc/%d/root/tmp" % sb.pid
    for d in ("d1", "d2"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "d1/prog"), "w") as f:
        f.write("echo wrong\n")
    os.chmod(os.path.join(root, "d1/prog"), 0o644)
    with open(os.path.join(root, "d2/prog"), "w") as f:
        f.write('echo "via sh: $0 $1"\n')
    os.chmod(os.path.join(root, "d2/prog"), 0o755)
    err, step, _, status, out, _ = run(c, ["prog", "arg1"], env=["PATH=/tmp/d1:/tmp/d2"])
    assert err == 0 and status == 0, (err, step, status)
    assert out == "via sh: /tmp/d2/prog arg1\n", repr(out)
    err, step, _, _, _, _ = run(c, ["prog"], env=["PATH=/tmp/d1"])
    assert err == errno.EACCES and step == "exec", (err, step)


def t_spawned_signal_state(sb, c):
    """Init ignores SIGPIPE and blocks SIGCHLD; a spawned process starts with neither."""
    _, _, _, _, out, _ = run(c, ["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"])
    assert re.search(r"^SigIgn:\s+0+$", out, re.M) and re.search(r"^SigBlk:\s+0+$", out, re.M), out


def t_init_hardened(sb, c):
    """Init holds the bounding set and filter every spawned process inherits (loaded once, there)."""
    with open("/proc/%d/status" % sb.pid) as f:
        status = f.read()
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status
    caps = cap_fields(status)
    assert caps["CapBnd"] == SANDBOX_CAPS, "%x" % caps["CapBnd"]
    assert caps["CapEff"] & (1 << 21), "init keeps CAP_SYS_ADMIN in its effective set"
    assert re.search(r"^SigIgn:\s+0*1000$", status, re.M), status  # SIGPIPE only


def t_user_no_caps(sb, c):
    err, step, _, status, out, _ = run(c, ["grep", "Cap", "/proc/self/status"], uid=1000, gid=1000)
    assert err == 0 and status == 0, (err, step, status)
    caps = cap_fields(out)
    assert caps["CapEff"] == 0 and caps["CapPrm"] == 0 and caps["CapAmb"] == 0, out
    assert caps["CapBnd"] == SANDBOX_CAPS, "%x" % caps["CapBnd"]
    _, _, _, _, out, _ = run(c, ["id"], uid=1000, gid=1000)
    assert out == "uid=1000(user) gid=1000(user) groups=1000(user)\n", repr(out)


def t_root_caps(sb, c):
    err, step, _, status, out, _ = run(c, ["grep", "Cap", "/proc/self/status"], flags=ROOT_CAPS)
    assert err == 0 and status == 0, (err, step, status)
    caps = cap_fields(out)
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[k] == SANDBOX_CAPS, "%s %x" % (k, caps[k])
    _, _, _, _, out, _ = run(c, ["id", "-u"], flags=ROOT_CAPS)
    assert out == "0\n", out


def t_root_without_caps_flag(sb, c):
    _, _, _, _, out, _ = run(c, ["grep", "Cap", "/proc/self/status"], uid=0, gid=0)
    caps = cap_fields(out)
    assert caps["CapEff"] == 0 and caps["CapPrm"] == 0, out


def t_user_with_caps_flag(sb, c):
    _, _, _, _, out, _ = run(c, ["grep", "Cap", "/proc/self/status"], uid=1000, gid=1000,
                             flags=ROOT_CAPS)
    caps = cap_fields(out)
    assert caps["CapEff"] == SANDBOX_CAPS and caps["CapAmb"] == SANDBOX_CAPS, out


def t_seccomp_and_nnp(sb, c):
    _, _, _, _, out, _ = run(c, ["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"])
    assert re.search(r"^Seccomp:\s+2$", out, re.M) and re.search(r"^NoNewPrivs:\s+0$", out, re.M), out
    _, _, _, _, out, _ = run(c, ["grep", "NoNewPrivs", "/proc/self/status"], flags=NO_NEW_PRIVS)
    assert re.search(r"NoNewPrivs:\s+1", out), out


def t_chdir_error(sb, c):
    err, step, pid, _, _, _ = run(c, ["/bin/true"], cwd="/nonexistent")
    assert err == errno.ENOENT and step == "chdir", (err, step)
    assert pid not in c.list()


def t_exec_error(sb, c):
    err, step, _, _, _, _ = run(c, ["/bin/no-such-binary"])
    assert err == errno.ENOENT and step == "exec", (err, step)
    err, step, _, _, _, _ = run(c, ["no-such-command-on-path"])
    assert err == errno.ENOENT and step == "exec", (err, step)


def t_signal_and_list(sb, c):
    null = os.open("/dev/null", os.O_RDWR)
    err, pid, step = c.spawn(["sleep", "100"], [null] * 3)
    os.close(null)
    assert err == 0, (err, step)
    assert pid in c.list()
    assert c.signal(pid, signal.SIGTERM) == 0
    status = c.wait_exit(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
    assert pid not in c.list()
    assert c.signal(pid, signal.SIGTERM) == errno.ESRCH
    assert c.signal(1, signal.SIGKILL) == errno.EINVAL  # init is never a target


def t_signal_group(sb, c):
    null = os.open("/dev/null", os.O_RDWR)
    err, pid, step = c.spawn(["sh", "-c", "sleep 101 & sleep 102; wait"], [null] * 3)
    os.close(null)
    assert err == 0, (err, step)
    time.sleep(0.2)
    assert c.signal(pid, signal.SIGKILL, group=True) == 0
    status = c.wait_exit(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    time.sleep(0.1)
    _, _, _, _, out, _ = run(c, ["ps", "-eo", "args"])
    assert "sleep 10" not in out, out


def t_pid_namespace(sb, c):
    _, _, _, _, out, _ = run(c, ["cat", "/proc/1/comm"])
    assert out == "airlock-init\n", repr(out)
    _, _, _, _, out, _ = sh(c, "ls /proc | grep -c '^[0-9]'")
    assert int(out) <= 4, out  # init, sh, ls, grep
    _, _, _, _, out, _ = run(c, ["ps", "-e", "--no-headers", "-o", "pid,comm"])
    lines = out.strip().splitlines()
    assert len(lines) <= 3 and lines[0].split() == ["1", "airlock-init"], out


def t_mount_denied(sb, c):
    _, _, _, status, _, errout = run(c, ["mount", "-t", "tmpfs", "x", "/mnt"], flags=ROOT_CAPS)
    assert os.WEXITSTATUS(status) != 0, errout
    assert "ermission" in errout or "denied" in errout, errout


def t_unshare_denied(sb, c):
    for argv in (["unshare", "-U", "true"], ["unshare", "-m", "true"], ["unshare", "-n", "true"]):
        _, _, _, status, _, errout = run(c, argv, flags=ROOT_CAPS)
        assert os.WEXITSTATUS(status) != 0, (argv, errout)


def t_proc_sys_readonly(sb, c):
    _, _, _, status, _, errout = sh(c, "echo evil > /proc/sys/kernel/hostname", flags=ROOT_CAPS)
    assert os.WEXITSTATUS(status) != 0, errout
    _, _, _, _, out, _ = sh(c, "hostname; cat /etc/hostname; cat /proc/sys/kernel/hostname; grep -c sbx-test /etc/hosts")
    assert out == "sbx-test\nsbx-test\nsbx-test\n1\n", repr(out)
    _, _, _, _, out, _ = sh(c, "wc -c < /proc/keys; ls -A /proc/acpi | wc -l; touch /sys/x 2>&1 || echo ro",
                            flags=ROOT_CAPS)
    assert out.split()[:2] == ["0", "0"] and out.strip().endswith("ro"), repr(out)


def t_network(sb, c):
    # Init makes its network namespace after it has said ok; once it answers a request, its
    # namespace is its own and never the host's.
    assert c.ping() == (ACK, 0)
    assert os.stat("/proc/%d/ns/net" % sb.pid).st_ino != os.stat("/proc/self/ns/net").st_ino
    _, _, _, _, out, _ = run(c, ["ip", "-o", "link"])
    lines = out.strip().splitlines()
    assert len(lines) == 1 and ": lo:" in lines[0] and "UP" in lines[0], out
    _, _, _, _, out, _ = run(c, ["ip", "-o", "addr"])
    assert "127.0.0.1/8" in out, out
    # sysfs is the sandbox's: /sys/class/net lists its lo only, never the host's interfaces.
    _, _, _, _, out, _ = run(c, ["ls", "/sys/class/net"])
    assert out == "lo\n", repr(out)


def t_dev(sb, c):
    _, _, _, _, out, _ = sh(c, "ls -A /dev | sort | tr '\\n' ' '; head -c 5 /dev/urandom | wc -c; "
                               "echo x > /dev/null && echo nullok; stat -c %a /dev/shm")
    for name in "full null ptmx pts random shm stderr stdin stdout tty urandom zero fd".split():
        assert name in out.split(), (name, out)
    assert out.endswith(" 5\nnullok\n1777\n"), repr(out)


def t_pty(sb, c):
    master, slave = os.openpty()
    try:
        err, pid, step = c.spawn(["sh", "-c", "cut -d' ' -f7 /proc/self/stat"], [slave] * 3, flags=PTY)
        os.close(slave)
        slave = None
        assert err == 0, (err, step)
        out = b""
        try:
            while not out.endswith(b"\n"):
                r, _, _ = select.select([master], [], [], 5)
                assert r, "no pty output"
                out += os.read(master, 1024)
        except OSError:
            pass
        assert int(out.strip()) != 0, out  # tty_nr: a controlling terminal was set
        c.wait_exit(pid)
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    _, _, _, _, out, _ = sh(c, "cut -d' ' -f7 /proc/self/stat")
    assert out == "0\n", out


def t_bad_requests(sb, c):
    null = os.open("/dev/null", os.O_RDWR)
    try:
        err, _, step = c.spawn(["true"], [null, null])
        assert (err, step) == (errno.EINVAL, "fds"), (err, step)
        c.seq += 1
        c.send_raw(struct.pack("<IIIIIII", SPAWN, c.seq, 0, 0, 0, 1, 0) + b"/\0true", [null] * 3)
        typ, data = c.reply(c.seq)
        err, _ = struct.unpack_from("<iI", data, 8)
        assert typ == SPAWNED and err == errno.EINVAL and data[16:].startswith(b"request"), data
    finally:
        os.close(null)
    typ, data = c.request(99)
    assert typ == ACK and struct.unpack_from("<i", data, 8)[0] == errno.ENOSYS
    typ, data = c.request(SIGNAL, b"\0")
    assert typ == ACK and struct.unpack_from("<i", data, 8)[0] == errno.EINVAL
    assert c.ping() == (ACK, 0)


def t_large_message(sb, c):
    big = Client(sb.ctl, sndbuf=1 << 20)
    try:
        # ~200 KiB in one message (one string may not exceed the kernel's 128 KiB MAX_ARG_STRLEN)
        env = ENV + ["BIG%d=%s" % (i, "x" * 50000) for i in range(4)]
        err, step, _, status, out, _ = run(big, ["sh", "-c", 'echo $((${#BIG0}+${#BIG1}+${#BIG2}+${#BIG3}))'],
                                           env=env)
        assert err == 0 and out == "200000\n", (err, step, out)
        big.seq += 1
        big.send_raw(struct.pack("<II", PING, big.seq) + b"\0" * MSG_MAX)  # 8 bytes too many
        typ, data = big.reply(big.seq)
        assert typ == ACK and struct.unpack_from("<i", data, 8)[0] == errno.EMSGSIZE
    finally:
        big.close()
    assert private_kb(sb.pid) < 1024, private_kb(sb.pid)  # the big buffer pages were given back


def t_disconnect_keeps_processes(sb, c):
    c2 = Client(sb.ctl)
    null = os.open("/dev/null", os.O_RDWR)
    err, pid, _ = c2.spawn(["sleep", "100"], [null] * 3)
    os.close(null)
    assert err == 0
    c2.close()
    time.sleep(0.1)
    c3 = Client(sb.ctl)
    try:
        assert pid in c3.list()
        assert c3.signal(pid, signal.SIGKILL) == 0
        st3 = c3.wait_exit(pid)
        st = c.wait_exit(pid)  # EXIT goes to every connected client
        assert st == st3 and os.WTERMSIG(st) == signal.SIGKILL, (st, st3)
    finally:
        c3.close()


def t_gone_client(sb, c):
    # A client that sends a SPAWN and vanishes: the reply and the EXIT go to a dead peer.
    for _ in range(5):
        g = Client(sb.ctl)
        null = os.open("/dev/null", os.O_RDWR)
        g.seq += 1
        body = struct.pack("<IIIII", 0, 0, 0, 1, 0) + b"/\0/bin/true\0"
        g.send_raw(struct.pack("<II", SPAWN, g.seq) + body, [null] * 3)
        os.close(null)
        g.close()
    time.sleep(0.3)
    assert c.ping() == (ACK, 0)
    assert os.path.exists("/proc/%d" % sb.pid)


def t_spawn_latency(sb, c):
    null = os.open("/dev/null", os.O_RDWR)
    n = 300
    spawned, roundtrip = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        err, pid, step = c.spawn(["/bin/true"], [null] * 3)
        t1 = time.perf_counter()
        assert err == 0, (err, step)
        c.wait_exit(pid)
        t2 = time.perf_counter()
        spawned.append(t1 - t0)
        roundtrip.append(t2 - t0)
    os.close(null)
    spawned.sort()
    roundtrip.sort()
    print("    /bin/true x%d: SPAWN->SPAWNED median %.3f ms p90 %.3f ms; SPAWN->EXIT median %.3f ms p90 %.3f ms"
          % (n, spawned[n // 2] * 1e3, spawned[n * 9 // 10] * 1e3,
             roundtrip[n // 2] * 1e3, roundtrip[n * 9 // 10] * 1e3))
    assert roundtrip[n // 2] < 0.02, roundtrip[n // 2]


def t_idle_memory(sb, c):
    kb = private_kb(sb.pid)
    print("    init private memory (Private_Clean+Private_Dirty): %d kB" % kb)
    assert kb < 1024, kb


def t_kill_init(sb, c):
    null = os.open("/dev/null", os.O_RDWR)
    for _ in range(3):
        err, _, _ = c.spawn(["sleep", "100"], [null] * 3, uid=1000, gid=1000)
        assert err == 0
    os.close(null)
    procs = os.path.join(sb.cgroups[0], "cgroup.procs")
    with open(procs) as f:
        assert len(f.read().split()) == 4  # init + 3 sleeps
    os.kill(sb.pid, signal.SIGKILL)
    try:
        while True:
            c._recv()  # EXIT events may come first; then EOF
    except EOFError:
        pass
    deadline = time.time() + 5
    while time.time() < deadline:
        with open(procs) as f:
            if not f.read().split():
                break
        time.sleep(0.02)
    with open(procs) as f:
        assert f.read().split() == [], "processes survived init"
    sb.pid = None


def t_cgroups_removed(sb, c):
    sb.cleanup()
    for d in sb.cgroups:
        assert not os.path.exists(d), d


def t_ctl_path_too_long(init):
    state = "/tmp/" + "s" * 110
    r = subprocess.run([init, "--id", "long", "--lower", ROOTFS, "--state", state,
                        "--disk-bytes", "1000000"], stdout=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 1 and r.stdout == "error ctl-path: File name too long\n", r


def t_bad_cgroup_set(init):
    """--cgroup-set may only name a file directly inside one of the --cgroup directories."""
    state = tempfile.mkdtemp(prefix="al-")
    try:
        for bad in ("/etc/passwd=x", "/sys/fs/cgroup/pids/airlock-test/x/../pids.max=1",
                    "/sys/fs/cgroup/pids/airlock-test/x/=1", "/sys/fs/cgroup/pids/airlock-test/x/pids.max"):
            r = subprocess.run([init, "--id", "bad", "--lower", ROOTFS, "--state", state, "--disk-bytes",
                                "1000000", "--cgroup", "/sys/fs/cgroup/pids/airlock-test/x",
                                "--cgroup-set", bad], stdout=subprocess.PIPE, text=True, timeout=10)
            assert r.returncode == 1 and r.stdout == "error args: Invalid argument\n", (bad, r)
        assert not os.path.exists("/sys/fs/cgroup/pids/airlock-test/x")
    finally:
        shutil.rmtree(state, ignore_errors=True)


def t_zygote(init):
    """The zygote answers each request on its stdout, prefixed by the request's seq; a request with
    more strings than it takes is refused whole (never started with part of its arguments)."""
    import struct
    z = subprocess.Popen([init, "--zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    state = tempfile.mkdtemp(prefix="al-")
    pid = None
    try:
        def ask(strings):
            body = b"".join(x.encode() + b"\0" for x in strings)
            z.stdin.write(struct.pack("<I", len(body)) + body)
            z.stdin.flush()
            return z.stdout.readline().decode()

        base = ["--id", "zyg", "--lower", ROOTFS, "--state", state, "--disk-bytes", "1000000"]
        line = ask(["7"] + base + ["--hostname", "h"] * 62)  # 1 + 8 + 124 = 133 strings
        started = re.fullmatch(r"7 ok (\d+) \d+\n", line)
        if started:  # a broken zygote started it: still clean up
            os.kill(int(started.group(1)), signal.SIGKILL)
        assert line == "7 error args: Argument list too long\n", line
        assert not os.path.exists(os.path.join(state, "rw")), "a refused request must not start"
        line = ask(["8"] + base)
        m = re.fullmatch(r"8 ok (\d+) (\d+)\n", line)
        assert m, line
        pid = int(m.group(1))
        with open(os.path.join(state, "init.pid")) as f:
            assert f.read() == "%s %s" % (m.group(1), m.group(2))
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
        z.stdin.close()
        assert z.wait(timeout=10) == 0
        time.sleep(0.1)
        shutil.rmtree(state, ignore_errors=True)


def t_bad_lower(init):
    state = tempfile.mkdtemp(prefix="al-")
    try:
        for d in ("rw", "root"):
            os.mkdir(os.path.join(state, d))
        r = subprocess.run([init, "--id", "bad", "--lower", "/nonexistent-lower", "--state", state,
                            "--disk-bytes", "1000000"], stdout=subprocess.PIPE, text=True, timeout=10)
        assert r.returncode == 1 and r.stdout.startswith("error overlay: "), r
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(os.path.join(ROOTFS, "bin/echo")):
        sys.exit("no rootfs at %s (see the docstring)" % ROOTFS)
    init, bdir = build_init()
    passed = failed = 0

    def check(name, fn, *args):
        nonlocal passed, failed
        try:
            fn(*args)
            passed += 1
            print("ok   %s" % name)
        except Exception:
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc(file=sys.stdout)

    check("ctl_path_too_long", t_ctl_path_too_long, init)
    check("bad_lower", t_bad_lower, init)
    check("bad_cgroup_set", t_bad_cgroup_set, init)
    check("zygote", t_zygote, init)
    sb = Sandbox(init)
    try:
        sb.launch()
        check("start", t_start, sb, None)
        if sb.pid:
            c = Client(sb.ctl)
            tests = [t_init_fds_and_cgroups, t_ping, t_echo, t_execvp_path_and_env, t_exec_search,
                     t_spawned_signal_state, t_init_hardened, t_user_no_caps,
                     t_root_caps, t_root_without_caps_flag, t_user_with_caps_flag,
                     t_seccomp_and_nnp, t_chdir_error, t_exec_error, t_signal_and_list,
                     t_signal_group, t_pid_namespace, t_mount_denied, t_unshare_denied,
                     t_proc_sys_readonly, t_network, t_dev, t_pty, t_bad_requests,
                     t_large_message, t_disconnect_keeps_processes, t_gone_client,
                     t_spawn_latency, t_idle_memory, t_kill_init, t_cgroups_removed]
            for t in tests:
                check(t.__name__[2:], t, sb, c)
            c.close()
    finally:
        sb.cleanup()
        if bdir:
            shutil.rmtree(bdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
