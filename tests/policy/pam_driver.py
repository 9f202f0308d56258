"""A tiny PAM application (libpam through ctypes): start a PAM transaction for a service and
user, open the session, report our own cgroups and wait for a line on stdin, close the
session, report again.  Run as root by the PAM tests; prints JSON lines."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys

PAM_SUCCESS = 0


class PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class PamResponse(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_char_p), ("resp_retcode", ctypes.c_int)]


CONV = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(PamMessage)),
    ctypes.POINTER(ctypes.POINTER(PamResponse)),
    ctypes.c_void_p,
)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", ctypes.c_void_p)]


def _conv(n, msgs, resp, data):
    return 19  # PAM_CONV_ERR: nothing to say to a user here


def cgroups() -> dict[str, str]:
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f.read().split("\n"):
            parts = line.split(":", 2)
            if len(parts) == 3:
                out[parts[1] or "unified"] = parts[2]
    return out


def main() -> int:
    service, user = sys.argv[1], sys.argv[2]
    pam = ctypes.CDLL(ctypes.util.find_library("pam"))
    handle = ctypes.c_void_p()
    conv = PamConv(CONV(_conv), None)
    rc = pam.pam_start(service.encode(), user.encode(), ctypes.byref(conv), ctypes.byref(handle))
    if rc != PAM_SUCCESS:
        print(json.dumps({"error": f"pam_start {rc}"}), flush=True)
        return 1
    rc = pam.pam_open_session(handle, 0)
    print(json.dumps({"open": rc, "cgroups": cgroups()}), flush=True)
    sys.stdin.readline()
    rc = pam.pam_close_session(handle, 0)
    print(json.dumps({"close": rc, "cgroups": cgroups()}), flush=True)
    pam.pam_end(handle, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
