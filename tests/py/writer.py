#!/usr/bin/env python3
"""A writer process for delivery tests: appends numbered lines
`<writer> <seq> <padding>` (the format of tests/src/lines.rs) to PATH at a
steady RATE of lines per second until COUNT lines are written.

--reopen: open, write and close for every chunk (an app that reopens its
log, as after logrotate's `create`); --reopen-on-hup: keep one handle and
open the path again when SIGHUP arrives (rsyslog, nginx: until then the
lines go to the renamed file); otherwise keep one handle (copytruncate's
case). Each chunk is one write(2) of whole lines, so a
SIGSTOP from the test never leaves half a line behind.

Prints the number of lines written to stdout when done or on SIGTERM.
"""
import argparse, os, signal, sys, time

PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 5


def line(writer, seq):
    n = (seq * 2654435761) % (1 << 64) % 150
    return f"{writer:03} {seq:010} {PAD[:n]}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("writer", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("rate", type=float)
    ap.add_argument("--reopen", action="store_true")
    ap.add_argument("--reopen-on-hup", action="store_true")
    args = ap.parse_args()
    written = 0
    stop = False
    hup = False

    def on_hup(*_):
        nonlocal hup
        hup = True

    signal.signal(signal.SIGHUP, on_hup)

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    chunk = max(1, int(args.rate / 100))  # ~100 writes per second
    start = time.monotonic()
    fd = None if args.reopen else os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while written < args.count and not stop:
        n = min(chunk, args.count - written)
        data = "".join(line(args.writer, written + i) for i in range(n)).encode()
        if args.reopen:
            f = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(f, data)
            os.close(f)
        else:
            if hup:
                hup = False
                os.close(fd)
                fd = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, data)
        written += n
        # Pace by the clock, so a pause (SIGSTOP) is caught up afterwards.
        due = start + written / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(written, flush=True)


if __name__ == "__main__":
    main()
