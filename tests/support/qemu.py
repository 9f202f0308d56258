"""A throw-away pure cgroup v2 machine: Debian's kernel booted under qemu (TCG), tier t5.

These hosts are hybrid (most controllers bound to v1), so v2 resource controllers can only be
exercised for real in a VM with its own kernel.  `/dev/kvm` here is a paravirtual variant a
stock kernel hangs under, so qemu runs in TCG (software) mode: slow, but ~5 s to boot.

The VM:

* kernel: Debian's ``linux-image-<abi>-amd64``, fetched (not installed) by
  ``tests/support/qemu/fetch-kernel`` (run by ``scripts/install-test-deps``) into
  ``$CGTEST_KERNEL_CACHE`` (default ``/var/cache/cgmanager-tests``);
* initramfs (built here, cached by content hash): static busybox, the virtio-pci and 9p
  modules (with their dependencies, from the modules' own ``depends=``), and ``/init`` from
  ``tests/support/qemu/init``.  ``/init`` mounts proc/sys/devtmpfs, loads the modules, mounts
  **cgroup2 at /sys/fs/cgroup with nsdelegate,memory_recursiveprot** (as systemd does; inside
  the VM that is the VM's own setting) and enables every available controller in the root's
  ``cgroup.subtree_control``; then mounts the 9p shares listed by the host, runs the command
  and powers off;
* shares (virtio-9p, qemu ``readonly=on``: the VM cannot write the host's files): ``/usr``
  (which, merged-/usr, is also /bin /lib /lib64 /sbin), the repository and the interpreter's
  prefix (venv) at their host paths; one private writable *exchange* dir (a host temp dir) at
  ``/.cgtest/xfer`` for the command, its output and its exit status.

Nothing the VM does reaches the host's cgroups: it has its own kernel.  qemu runs with a hard
timeout, is killed through a pidfd on timeout, on KeyboardInterrupt (the harness's SIGTERM),
at exit, and (PR_SET_PDEATHSIG) if this process dies.

API: ``probe() -> reason | None``, ``run_in_vm(argv, *, timeout=300, memory="1G", cpus=2,
env=None) -> VmResult``.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import dataclasses
import glob
import hashlib
import io
import lzma
import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "qemu")
REPO = os.path.dirname(os.path.dirname(HERE))

KERNEL_CACHE = os.environ.get("CGTEST_KERNEL_CACHE", "/var/cache/cgmanager-tests")
QEMU = os.environ.get("CGTEST_QEMU", "qemu-system-x86_64")
BUSYBOX_CANDIDATES = ("/usr/bin/busybox", "/bin/busybox")
#: modules the VM loads (their dependencies are added from each module's ``depends=``)
WANTED_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "virtio_blk")
#: what tests/support/qemu/fetch-kernel writes to .complete (the layout of its cache dirs)
KERNEL_FORMAT = "2"
#: where the exchange share is mounted inside the VM
XFER = "/.cgtest/xfer"
INSTALL_HINT = "run scripts/install-test-deps"


class VmError(RuntimeError):
    """The VM could not be built, booted, or did not run the command to its end."""


@dataclasses.dataclass
class VmResult:
    returncode: int
    output: str  # the command's stdout and stderr, interleaved
    console: str  # the serial console (kernel messages, /init's progress)
    boot_seconds: float | None  # qemu start -> the command starting
    total_seconds: float  # qemu start -> qemu exit
    files: dict[str, bytes]  # files the command left in $CGTEST_XFER


@dataclasses.dataclass(frozen=True)
class Kernel:
    dir: str
    vmlinuz: str
    abi: str
    version: str
    modules: str  # the tree holding kernel/…/*.ko


# ----------------------------------------------------------------------------------- probing
def find_kernel(cache: str = KERNEL_CACHE) -> Kernel | None:
    """The newest complete kernel in the cache, or None."""
    found = []
    for d in glob.glob(os.path.join(cache, "linux-image-*")):
        try:
            if _read(f"{d}/.complete").strip() != KERNEL_FORMAT or not os.path.isfile(
                f"{d}/vmlinuz"
            ):
                continue
            abi = _read(f"{d}/abi").strip()
            version = _read(f"{d}/version").strip()
        except OSError:
            continue
        found.append(
            (
                os.path.getmtime(f"{d}/.complete"),
                Kernel(d, f"{d}/vmlinuz", abi, version, f"{d}/modules"),
            )
        )
    if not found:
        return None
    return max(found, key=lambda t: t[0])[1]


def find_busybox() -> str | None:
    for p in BUSYBOX_CANDIDATES:
        if os.path.isfile(p) and _is_static_elf(p):
            return p
    return None


def probe() -> str | None:
    """Why a VM cannot be booted here, or None.  KVM is not needed (TCG)."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (Debian package qemu-system-x86; {INSTALL_HINT})"
    if find_busybox() is None:
        return f"no static busybox at {' or '.join(BUSYBOX_CANDIDATES)} (busybox-static; {INSTALL_HINT})"
    k = find_kernel()
    if k is None:
        return (
            f"no kernel (cache format {KERNEL_FORMAT}) in {KERNEL_CACHE} "
            f"(tests/support/qemu/fetch-kernel; {INSTALL_HINT})"
        )
    try:
        module_files(k)
    except VmError as e:
        return str(e)
    return None


# ----------------------------------------------------------------------------------- modules
def _modinfo_depends(data: bytes) -> list[str]:
    """The ``depends=`` of a .ko's .modinfo section (NUL-separated key=value strings)."""
    i = data.find(b"\0depends=")
    if i < 0:
        return []
    end = data.index(b"\0", i + 1)
    value = data[i + len(b"\0depends=") : end].decode()
    return [m for m in value.split(",") if m]


def _module_data(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return lzma.decompress(data) if path.endswith(".xz") else data


def module_files(kernel: Kernel) -> list[tuple[str, bytes]]:
    """(name, .ko bytes) for WANTED_MODULES and their dependencies, in load order.  Modules
    built into the kernel (modules.builtin) are left out."""
    index: dict[str, str] = {}
    for path in glob.glob(os.path.join(kernel.modules, "kernel", "**", "*.ko*"), recursive=True):
        name = os.path.basename(path).split(".ko")[0].replace("-", "_")
        index[name] = path
    builtin = set()
    try:
        for line in _read(os.path.join(kernel.modules, "modules.builtin")).split():
            builtin.add(os.path.basename(line).split(".ko")[0].replace("-", "_"))
    except OSError:
        pass
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            raise VmError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        path = index.get(name)
        if path is None:
            raise VmError(f"kernel module {name} not in {kernel.modules} ({INSTALL_HINT})")
        data = _module_data(path)
        for dep in _modinfo_depends(data):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append((name, data))

    for m in WANTED_MODULES:
        visit(m, ())
    return order


# --------------------------------------------------------------------------------- initramfs
class _Newc:
    """A minimal cpio 'newc' writer (what the kernel unpacks), deterministic: mtime 0."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nameb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nameb), 0)
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + nameb)
        self.buf.write(b"\0" * (-(len(hdr) + len(nameb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))
        self.ino += 1

    def dir(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        data = self.buf.getvalue()
        return data + b"\0" * (-len(data) % 512)


def _initramfs_bytes(kernel: Kernel, busybox: str) -> bytes:
    a = _Newc()
    for d in (
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "etc",
        "mnt",
        "usr",
        "work",
        ".cgtest",
        ".cgtest/modules",
        ".cgtest/xfer",
        ".cgtest/bin",
    ):
        a.dir(d, 0o1777 if d == "tmp" else 0o755)
    # merged /usr: these resolve once /usr is mounted (init itself runs from /.cgtest);
    # on a host without merged /usr they are shared directories (default_shares)
    for link in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{link}"):
            a.symlink(link, os.readlink(f"/{link}").lstrip("/"))
        else:
            a.dir(link)
    with open(busybox, "rb") as f:
        a.file(".cgtest/bin/busybox", f.read(), 0o755)
    for i, (name, data) in enumerate(module_files(kernel)):
        a.file(f".cgtest/modules/{i:02d}-{name}.ko", data)
    a.file("init", _read_bytes(os.path.join(ASSETS, "init")), 0o755)
    a.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )
    a.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    a.file("etc/hosts", b"127.0.0.1 localhost\n")
    a.file("etc/hostname", b"cgtest-vm\n")
    a.symlink("etc/mtab", "/proc/self/mounts")
    return a.finish()


def initramfs(kernel: Kernel, cache_dirs: tuple[str, ...] | None = None) -> str:
    """Path of the initramfs for *kernel*, built once per content (kept in the kernel cache
    if writable, else in the temp dir)."""
    busybox = find_busybox()
    if busybox is None:
        raise VmError(f"no static busybox ({INSTALL_HINT})")
    data = _initramfs_bytes(kernel, busybox)
    digest = hashlib.sha256(data).hexdigest()[:16]
    dirs = cache_dirs or (kernel.dir, os.path.join(tempfile.gettempdir(), "cgtest-initramfs"))
    for d in dirs:
        path = os.path.join(d, f"initramfs-{digest}.cpio")
        if os.path.isfile(path):
            return path
        try:
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".initramfs-")
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users' runs
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        for old in glob.glob(os.path.join(d, "initramfs-*.cpio")):
            if old != path and time.time() - os.path.getmtime(old) > 86400:
                try:
                    os.unlink(old)
                except OSError:
                    pass
        return path
    raise VmError(f"no writable directory for the initramfs among {dirs}")


# ------------------------------------------------------------------------------------ shares
def default_shares() -> list[str]:
    """Host directories the VM sees read-only at the same paths: /usr (merged-/usr hosts:
    also /bin /lib /lib64 /sbin), the repository, and the interpreter's prefix."""
    shares = ["/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.isdir(d) and not os.path.islink(d):
            shares.append(d)  # not merged-/usr
    for d in (REPO, sys.prefix, sys.base_prefix):
        d = os.path.realpath(d)
        if not any(d == s or d.startswith(s.rstrip("/") + "/") for s in shares):
            shares.append(d)
    return shares


# ----------------------------------------------------------------------------- process care
_live: dict[int, tuple[subprocess.Popen, int]] = {}
_live_lock = threading.Lock()
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)


def _kill(popen: subprocess.Popen, pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        popen.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


@atexit.register
def kill_all() -> None:
    """Kill every VM still running (atexit; also callable from a signal handler)."""
    with _live_lock:
        items = list(_live.items())
        _live.clear()
    for _pid, (popen, pidfd) in items:
        _kill(popen, pidfd)
        os.close(pidfd)


# -------------------------------------------------------------------------------------- run
def qemu_argv(
    kernel: Kernel, initrd: str, shares: list[str], xfer: str, console: str, memory: str, cpus: int
) -> list[str]:
    argv = [
        QEMU,
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        memory,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel.vmlinuz,
        "-initrd",
        initrd,
        "-append",
        "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init",
        "-serial",
        f"file:{console}",
        "-device",
        "virtio-rng-pci",
        # a disk for the io controller (/dev/vda in the VM): reads return zeros, writes vanish
        "-blockdev",
        "driver=null-co,node-name=null0,size=1073741824,read-zeroes=on",
        "-device",
        "virtio-blk-pci,drive=null0,serial=cgtest-null",
    ]
    for i, path in enumerate(shares):
        argv += [
            "-fsdev",
            f"local,id=ro{i},path={path},security_model=none,readonly=on",
            "-device",
            f"virtio-9p-pci,fsdev=ro{i},mount_tag=ro{i}",
        ]
    argv += [
        "-fsdev",
        f"local,id=xfer,path={xfer},security_model=none",
        "-device",
        "virtio-9p-pci,fsdev=xfer,mount_tag=xfer",
    ]
    return argv


def run_in_vm(
    argv: list[str],
    *,
    timeout: float = 300,
    memory: str = "1G",
    cpus: int = 2,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    shares: list[str] | None = None,
    files: dict[str, bytes] | None = None,
) -> VmResult:
    """Boot the VM, run *argv* (as root, in the root cgroup) and return its exit status and
    output.  *files* are put in the exchange dir, which the command sees as ``$CGTEST_XFER``
    (also where it may leave result files, returned in ``VmResult.files``).  Raises VmError if
    the VM cannot be built or booted, or the command did not finish within *timeout* seconds
    of wall time (boot included); qemu is killed then."""
    if (why := probe()) is not None:
        raise VmError(why)
    kernel = find_kernel()
    assert kernel is not None
    initrd = initramfs(kernel)
    shares = default_shares() if shares is None else shares
    _sweep_tmp()
    tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
    try:
        xfer = os.path.join(tmp, "xfer")
        os.mkdir(xfer)
        console = os.path.join(tmp, "console.log")
        full_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "CGTEST_XFER": XFER,
            "CGTEST_IN_VM": "1",
            **(env or {}),
        }
        _write(f"{xfer}/mounts", "".join(f"ro{i} {p}\n" for i, p in enumerate(shares)))
        _write(f"{xfer}/cmd", _command_script(argv, full_env, cwd or "/"))
        for name, data in (files or {}).items():
            _write_bytes(os.path.join(xfer, name), data)
        qargv = qemu_argv(kernel, initrd, shares, xfer, console, memory, cpus)
        return _boot(qargv, xfer, console, timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TMP_PREFIX = "cgtest-vm-"


def _sweep_tmp() -> None:
    """Remove the temp dirs of runs whose process is gone (killed before its cleanup)."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), f"{_TMP_PREFIX}*-*")):
        pid = os.path.basename(d)[len(_TMP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(d, ignore_errors=True)


def _command_script(argv: list[str], env: dict[str, str], cwd: str) -> str:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append(f"cd {shlex.quote(cwd)}")
    lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


def _boot(qargv: list[str], xfer: str, console: str, timeout: float) -> VmResult:
    start = time.monotonic()
    log = os.path.join(os.path.dirname(xfer), "qemu.log")
    with open(log, "wb") as logf:
        popen = subprocess.Popen(
            qargv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    pidfd = os.pidfd_open(popen.pid)
    with _live_lock:
        _live[popen.pid] = (popen, pidfd)
    timed_out = False
    try:
        p = select.poll()
        p.register(pidfd, select.POLLIN)
        if not p.poll(int(timeout * 1000)):
            timed_out = True
        _kill(popen, pidfd) if timed_out else popen.wait()
    finally:
        # also reached on KeyboardInterrupt (the harness turns SIGTERM into one)
        with _live_lock:
            _live.pop(popen.pid, None)
        if popen.returncode is None:
            _kill(popen, pidfd)
        os.close(pidfd)
    total = time.monotonic() - start
    cons = _read_lossy(console)
    qlog = _read_lossy(log)
    output = _read_lossy(f"{xfer}/output")
    boot = None
    try:
        boot = float(_read(f"{xfer}/started").split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if timed_out:
        raise VmError(
            f"VM timed out after {timeout:.0f} s (qemu killed)\n"
            f"--- command output ---\n{output[-4000:]}\n--- console ---\n{cons[-4000:]}"
        )
    try:
        rc = int(_read(f"{xfer}/rc").strip())
    except (OSError, ValueError):
        raise VmError(
            f"the VM did not run the command to its end (qemu exit {popen.returncode})\n"
            f"--- qemu ---\n{qlog[-2000:]}\n--- command output ---\n{output[-4000:]}\n"
            f"--- console ---\n{cons[-6000:]}"
        ) from None
    files = {}
    for name in os.listdir(xfer):
        if name not in ("mounts", "cmd", "output", "rc", "started"):
            path = os.path.join(xfer, name)
            if os.path.isfile(path):
                files[name] = _read_bytes(path)
    return VmResult(rc, output, cons, boot, total, files)


# ----------------------------------------------------------------------------------- helpers
def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_lossy(path: str) -> str:
    try:
        return _read_bytes(path).decode("utf-8", "replace")
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    _write_bytes(path, text.encode())


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _is_static_elf(path: str) -> bool:
    """An ELF executable without a PT_INTERP program header (no dynamic loader needed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return False
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(
        int.from_bytes(table[i : i + 4], "little") != 3  # PT_INTERP
        for i in range(0, len(table), phentsize)
    )
