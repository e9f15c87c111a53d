"""Batch send and receive on a python-can SocketCAN bus: ``sendmmsg(2)`` / ``recvmmsg(2)``, one
system call per batch of frames instead of two or three per frame.

python-can's :class:`~can.interfaces.socketcan.SocketcanBus` reads the clock and ``select``\\ s
before every ``send`` and ``recv``: three system calls per frame. On a normal kernel that is a
few microseconds; inside user-mode Linux (the test harness, ``docs/socketcan.md``) every system
call, clock reads included, is a ptrace round trip on the host (25-40 us), and python-can's
per-frame path measured 230 us per frame sent or received, which starved the bench topology
(~1500 frames/s) on the guest's one CPU. The BMS node and the pack simulator produce their
frames in batches (one per 10 ms tick) and take everything queued at once, so a batch is one
system call here (~4 us per frame there).

    sb = SocketBatch.of(bus)       # None unless bus is a classic (non-FD) SocketcanBus
    sb.send_frames(keys, data, dlc)              # arrays as bms.can.frames; returns frames sent
    if sb.wait(timeout_s):                       # select(2) for readability
        keys, data, dlc, data_frame, t = sb.recv_arrays()   # everything queued, non-blocking

The socket is the bus's own (its kernel filters, loopback and timestamp options apply); the bus
stays usable through python-can's API. Keys are :func:`bms.can.codec.frame_key`: bit 31 is
SocketCAN's CAN_EFF_FLAG, as in the kernel's ``can_id``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket

import can
import numpy as np

from bms.can.codec import EXTENDED_FLAG

CAN_MTU = 16                  # sizeof(struct can_frame)
_EFF, _RTR, _ERR = 0x80000000, 0x40000000, 0x20000000
_SFF_MASK, _EFF_MASK = 0x7FF, 0x1FFFFFFF
_CTRL = 64                    # control buffer per frame: room for the SO_TIMESTAMPNS message (32 bytes)
_SO_TIMESTAMPNS = 35          # asm-generic/socket.h (SCM_TIMESTAMPNS)
_SO_RCVBUFFORCE = 33
_SO_MEMINFO = 55              # u32[SK_MEMINFO_VARS]; index 8 = SK_MEMINFO_DROPS
_MSG_DONTWAIT = 0x40
_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


class SocketBatch:
    """``sendmmsg`` / ``recvmmsg`` on a SocketCAN raw socket of classic CAN frames (16 bytes)."""

    def __init__(self, sock: socket.socket, capacity: int = 512):
        if _libc is None or not hasattr(_libc, "recvmmsg"):
            raise OSError("sendmmsg/recvmmsg need Linux")
        self.sock, self.fd, self.cap = sock, sock.fileno(), int(capacity)
        cap = self.cap
        # frame buffers and the struct mmsghdr / iovec arrays pointing into them (x86-64/aarch64
        # layout: msghdr = 7 words, mmsghdr = msghdr + u32 msg_len + pad = 8 words)
        self._tx = np.zeros((cap, CAN_MTU), np.uint8)
        self._rx = np.zeros((cap, CAN_MTU), np.uint8)
        self._ctrl = np.zeros((cap, _CTRL), np.uint8)
        self._tx_iov, self._tx_hdr = self._headers(self._tx, None)
        self._rx_iov, self._rx_hdr = self._headers(self._rx, self._ctrl)

    @staticmethod
    def _headers(frames: np.ndarray, ctrl: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        cap = frames.shape[0]
        iov = np.zeros((cap, 2), np.uint64)
        iov[:, 0] = frames.ctypes.data + CAN_MTU * np.arange(cap, dtype=np.uint64)
        iov[:, 1] = CAN_MTU
        hdr = np.zeros((cap, 8), np.uint64)
        hdr[:, 2] = iov.ctypes.data + 16 * np.arange(cap, dtype=np.uint64)   # msg_iov
        hdr[:, 3] = 1                                                        # msg_iovlen
        if ctrl is not None:
            hdr[:, 4] = ctrl.ctypes.data + _CTRL * np.arange(cap, dtype=np.uint64)  # msg_control
        return iov, hdr

    @classmethod
    def of(cls, bus) -> "SocketBatch | None":
        """The batch interface of a python-can SocketCAN bus, None for any other bus (or CAN FD)."""
        try:
            from can.interfaces.socketcan import SocketcanBus
        except ImportError:  # pragma: no cover -- not Linux
            return None
        if not isinstance(bus, SocketcanBus) or _libc is None or not hasattr(_libc, "recvmmsg"):
            return None
        if bus.protocol != can.CanProtocol.CAN_20:
            return None  # CAN FD sockets carry 72-byte frames: python-can's own path
        if bus.channel == "":
            return None  # an unbound socket needs a destination per frame
        return cls(bus.socket)

    # ---- send ------------------------------------------------------------------------------
    def send_frames(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float | None = None) -> int:
        """Send classic data frames (arrays as :mod:`bms.can.frames`) in as few system calls as the
        batch needs; returns how many the kernel took (the rest were refused: full transmit queue).
        Raises :class:`can.CanOperationError` on any other error, as python-can's ``send``."""
        n = int(keys.shape[0])
        sent = 0
        while sent < n:
            m = min(n - sent, self.cap)
            k = np.asarray(keys[sent:sent + m], np.int64)
            buf = self._tx[:m]
            buf[:, :4] = np.where(k >= EXTENDED_FLAG, (k & _EFF_MASK) | _EFF, k & _SFF_MASK).astype(np.uint32) \
                .view(np.uint8).reshape(m, 4)
            buf[:, 4] = np.asarray(dlc[sent:sent + m])
            buf[:, 8:] = np.asarray(data[sent:sent + m])[:, :8]
            r = _libc.sendmmsg(self.fd, ctypes.c_void_p(self._tx_hdr.ctypes.data), m, 0)
            if r < 0:
                err = ctypes.get_errno()
                if err in (errno.ENOBUFS, errno.EAGAIN):
                    return sent
                raise can.CanOperationError(f"Failed to transmit: {os.strerror(err)}", err)
            sent += r
            if r < m:
                return sent
        return sent

    def send_messages(self, msgs: list[can.Message]) -> int:
        """:meth:`send_frames` of python-can frames (classic data frames; others are refused:
        send them with the bus's own ``send``)."""
        from bms.can.frames import to_arrays

        a = to_arrays(msgs)
        if not a.data_frame.all():
            raise ValueError("SocketBatch sends classic data frames only")
        return self.send_frames(a.keys, a.data, a.dlc)

    # ---- receive ---------------------------------------------------------------------------
    def wait(self, timeout_s: float) -> bool:
        """True when a frame can be read within ``timeout_s`` (>= 0) seconds."""
        try:
            return bool(select.select([self.sock], [], [], max(0.0, timeout_s))[0])
        except OSError as error:
            raise can.CanOperationError(f"Failed to receive: {error.strerror}", error.errno) from error

    def recv_arrays(self, max_frames: int = 1 << 20):
        """Everything queued on the socket now (non-blocking), as ``(keys, data, dlc, data_frame,
        t)``: keys (n,) int64, data (n, 8) uint8, dlc (n,) int64, data_frame (n,) bool (False for
        error / remote frames), t (n,) float64 kernel receive time stamps (``time.time`` clock;
        NaN when the socket has no SO_TIMESTAMPNS)."""
        return self._recv(max_frames)[:5]

    def _recv(self, max_frames: int):
        parts = []
        got = 0
        while got < max_frames:
            m = min(self.cap, max_frames - got)
            self._rx_hdr[:m, 5] = _CTRL   # msg_controllen: the kernel writes back what it used
            r = _libc.recvmmsg(self.fd, ctypes.c_void_p(self._rx_hdr.ctypes.data), m, _MSG_DONTWAIT, None)
            if r < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    break
                raise can.CanOperationError(f"Failed to receive: {os.strerror(err)}", err)
            if r == 0:
                break
            parts.append(self._unpack(r))
            got += r
            if r < m:
                break
        if not parts:
            return (np.zeros(0, np.int64), np.zeros((0, 8), np.uint8), np.zeros(0, np.int64),
                    np.zeros(0, np.bool_), np.zeros(0), np.zeros(0, np.int64))
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(x) for x in zip(*parts))

    def _unpack(self, r: int):
        raw = self._rx[:r]
        cid = raw[:, :4].copy().view(np.uint32).reshape(r).astype(np.int64)
        eff = (cid & _EFF) != 0
        keys = np.where(eff, (cid & _EFF_MASK) | EXTENDED_FLAG, cid & _SFF_MASK)
        dlc = np.minimum(raw[:, 4].astype(np.int64), 8)
        data = raw[:, 8:].copy()
        data_frame = ((cid & (_RTR | _ERR)) == 0) & (self._rx_hdr[:r, 7] & 0xFFFFFFFF == CAN_MTU)
        ctrl = self._ctrl[:r]
        lvl = ctrl[:, 8:12].copy().view(np.int32).reshape(r)
        typ = ctrl[:, 12:16].copy().view(np.int32).reshape(r)
        ts = ctrl[:, 16:32].copy().view(np.int64).reshape(r, 2)
        has_ts = (self._rx_hdr[:r, 5] >= 32) & (lvl == socket.SOL_SOCKET) & (typ == _SO_TIMESTAMPNS)
        t = np.where(has_ts, ts[:, 0] + ts[:, 1] * 1e-9, np.nan)
        return keys, data, dlc, data_frame, t, cid

    def recv_messages(self, channel=None) -> list[can.Message]:
        """:meth:`recv_arrays` as python-can frames stamped with the kernel's receive time (error
        and remote frames flagged as python-can's own receive path does)."""
        keys, data, dlc, ok, t, cid = self._recv(1 << 20)
        raw = data.tobytes()
        if ok.all():
            return [can.Message(timestamp=ts, arbitration_id=k & ~EXTENDED_FLAG, is_extended_id=k >= EXTENDED_FLAG,
                                data=raw[8 * j:8 * j + n], dlc=n, channel=channel)
                    for j, (k, n, ts) in enumerate(zip(keys.tolist(), dlc.tolist(), t.tolist()))]
        return [can.Message(timestamp=ts, arbitration_id=k & ~EXTENDED_FLAG, is_extended_id=k >= EXTENDED_FLAG,
                            is_remote_frame=bool(c & _RTR), is_error_frame=bool(c & _ERR),
                            data=raw[8 * j:8 * j + n], dlc=n, channel=channel)
                for j, (k, n, ts, c) in enumerate(zip(keys.tolist(), dlc.tolist(), t.tolist(), cid.tolist()))]

    def set_rcvbuf(self, n_bytes: int) -> int:
        """Ask for a receive buffer of ``n_bytes`` (SO_RCVBUFFORCE where privileged, else SO_RCVBUF,
        which the kernel caps at net.core.rmem_max); returns the size the kernel reports."""
        for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, int(n_bytes))
                break
            except OSError:
                continue
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def drops(self) -> int | None:
        """Frames the kernel dropped on this socket (receive buffer full) since it was opened
        (SO_MEMINFO's SK_MEMINFO_DROPS), None where the kernel does not tell."""
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 9 * 4)
        except OSError:
            return None
        return int(np.frombuffer(raw, np.uint32)[8]) if len(raw) >= 36 else None
