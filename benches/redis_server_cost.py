#!/usr/bin/env python3
"""Redis server instructions per call of each command a session write sends, and of the floor's
and tower-sessions' (fred) commands, counted by callgrind: deterministic, unlike CPU time on a
shared 2-core machine (BENCHMARKS.md, issue 14, ninth session).

    python3 benches/redis_server_cost.py [--calls N] [--port P] [variant ...]

Starts its own redis-server under `valgrind --tool=callgrind` on port P (default 6393, no
persistence), fills it with the loadgen workload's 10,000 sessions (five keys, about 1 KB, in the
driver's layout: a hash with the deadline field, an entry in the live index; and the same as
string blobs for fred's commands), then for each variant pipes N calls (default 3000) on random
sessions through `redis-cli --pipe`, with callgrind's counters zeroed before and dumped after,
and prints one line per variant:

    server_cost variant=<name> instructions_per_call=<n>

The variants (the usual save is read from session-redis/src/scripts.rs, so it is the landed one):

    ping        PING (what any command costs to receive and answer)
    hgetall     HGETALL of a session (a read, ours and the floor's)
    floor       HSET of one key + PEXPIRE, the floor's write
    get         GET of a 1 KB blob, fred's read
    set_xx      SET <blob> EXAT <t> XX, fred's write
    save        the driver's usual save, EVALSHA of scripts::SAVE with the loadgen write's
                arguments (3 keys, 8 arguments)
    eval_empty  EVALSHA of `return 1` without arguments (the script call's fixed cost)
    eval_args   the same with the save's 3 keys and 8 arguments
    save_hget   the save cut after its HGET and parse of the deadline field
    save_hset   the save cut before its ZADD (HGET, parse, HSET, PEXPIREAT)
    multi       the script-free form of the save: MULTI, HSET with a second driver field,
                PEXPIREAT XX, PEXPIRE 0 NX, ZADD XX GT, PEXPIREAT GT of the owner key, EXEC
                (not a layout the driver uses; see BENCHMARKS.md)

Needs python3, valgrind, redis-server and redis-cli. Nothing here is a target: the loadgen ratios
are; this says where a write's server time goes.
"""

import argparse
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSIONS = 10000
FIELD = b"\xffdeadline"
KEYS5 = ["user_id", "name", "roles", "cart", "csrf"]


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def landed_save_script():
    """scripts::SAVE's Lua source, with its two format arguments filled in as the crate does."""
    src = open(os.path.join(ROOT, "session-redis/src/scripts.rs")).read()
    m = re.search(r'pub\(crate\) static SAVE: LazyLock<Lua>.*?r#"(.*?)"#', src, re.S)
    trim = re.search(r"pub\(crate\) const TRIM_EVERY: u32 = (\d+);", src)
    doubled = "pub(crate) const TRIM_LIMIT: u32 = 2 * TRIM_EVERY;" in src
    if not m or not trim or not doubled:
        sys.exit("redis_server_cost: could not find scripts::SAVE in session-redis/src/scripts.rs")
    field = "'" + "".join("\\%d" % b for b in FIELD) + "'"
    lua = m.group(1).replace("{field}", field).replace("{trim}", str(2 * int(trim.group(1))))
    return lua.replace("{{", "{").replace("}}", "}")


class Server:
    def __init__(self, port, workdir):
        self.port = port
        self.workdir = workdir
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind",
             "--callgrind-out-file=%s/cg.out.%%p" % workdir,
             "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.cli_ok("PING") == "PONG":
                return
            time.sleep(0.1)
        sys.exit("redis_server_cost: redis-server under valgrind did not answer on port %d" % port)

    def cli_ok(self, *args):
        argv = [a if isinstance(a, bytes) else str(a) for a in args]
        p = subprocess.run(["redis-cli", "-p", str(self.port)] + argv, capture_output=True)
        return p.stdout.decode().strip()

    def cli(self, *args):
        out = self.cli_ok(*args)
        if out.startswith("ERR") or out.startswith("NOSCRIPT"):
            sys.exit("redis_server_cost: redis-cli %s: %s" % (args[0], out))
        return out

    def pipe(self, data):
        p = subprocess.run(["redis-cli", "-p", str(self.port), "--pipe"], input=data,
                           capture_output=True)
        if b"errors: 0" not in p.stdout:
            sys.exit("redis_server_cost: redis-cli --pipe: %s %s"
                     % (p.stdout[-300:], p.stderr[-300:]))

    def instructions(self, data):
        """Instructions the server spent on `data` (zeroed before, dumped after)."""
        pid = str(self.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
        self.pipe(data)
        before = set(glob.glob(self.workdir + "/cg.out.*"))
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
        for _ in range(100):
            new = set(glob.glob(self.workdir + "/cg.out.*")) - before
            if new:
                break
            time.sleep(0.1)
        path = max(new, key=os.path.getmtime)
        for _ in range(100):
            for line in open(path):
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
            time.sleep(0.1)
        sys.exit("redis_server_cost: no totals in " + path)

    def stop(self):
        self.cli_ok("SHUTDOWN", "NOSAVE")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--port", type=int, default=6393)
    ap.add_argument("variants", nargs="*")
    opts = ap.parse_args()
    for tool in ["valgrind", "callgrind_control", "redis-server", "redis-cli"]:
        if not shutil.which(tool):
            sys.exit("redis_server_cost: %s is missing (apt-get install -y valgrind redis-server)"
                     % tool)

    rng = random.Random(7)
    now = int(time.time() * 1000)
    ids = ["%043d" % i for i in range(SESSIONS)]
    vals = [rng.randbytes(n) for n in (40, 30, 120, 600, 44)]
    seen, meta = rng.randbytes(9), rng.randbytes(48)
    blob = rng.randbytes(1100)

    def fill():
        buf = []
        for i in ids:
            k = "b:" + i
            d = b"%d,%d,%d," % (now + 3600000, len(seen), len(meta)) + seen + meta
            args = ["HSET", k]
            for name, v in zip(KEYS5, vals):
                args += [name, v]
            args += [FIELD, d, "counter", b"\x01"]
            buf += [resp(*args), resp("PEXPIREAT", k, now + 3600000),
                    resp("ZADD", "b:live", now + 3600000, i),
                    resp("SET", "t:" + i, blob, "EX", 3600)]
        return b"".join(buf)

    save = landed_save_script()
    scripts = {
        "save": save,
        "eval_empty": "return 1",
        "eval_args": "return 1",
        "save_hget": save.split("redis.call('HSET'")[0] + "return 1\n",
        "save_hset": save.split("if redis.call('ZADD'")[0] + "return 1\n",
    }
    for name, body in scripts.items():
        if name.startswith("save_") and body == save + "return 1\n":
            sys.exit("redis_server_cost: SAVE changed shape; update the %s variant" % name)

    def score(at):
        return (at + 9999) // 10000 * 10000

    def evalsha_args(name, i, n, sha):
        """The call as `RedisStore::write` sends it for the loadgen write (keys, deadline, id,
        trim, index score, seen length and value, the changed pair)."""
        at = now + 3600000 + n
        if name == "eval_empty":
            return ["EVALSHA", sha, 0]
        return ["EVALSHA", sha, 3, "b:" + i, "b:owner:" + i, "b:live", at, i,
                now if n % 8 == 0 else 0, score(at), len(seen), seen, "counter", b"\x02"]

    def evalsha(name):
        return lambda i, n, sha: resp(*evalsha_args(name, i, n, sha))

    def floor(i, n, _):
        k = "b:" + i
        return resp("HSET", k, "counter", b"\x02") + resp("PEXPIRE", k, 3600000)

    def multi(i, n, _):
        k, at = "b:" + i, now + 3600000 + n
        return b"".join([
            resp("MULTI"),
            resp("HSET", k, "counter", b"\x02", b"\xffd2", b"%d,%s" % (at, seen)),
            resp("PEXPIREAT", k, at, "XX"), resp("PEXPIRE", k, 0, "NX"),
            resp("ZADD", "b:live", "XX", "GT", score(at), i),
            resp("PEXPIREAT", "b:owner:" + i, score(at), "GT"), resp("EXEC")])

    variants = {
        "ping": lambda i, n, _: resp("PING"),
        "hgetall": lambda i, n, _: resp("HGETALL", "b:" + i),
        "floor": floor,
        "get": lambda i, n, _: resp("GET", "t:" + i),
        "set_xx": lambda i, n, _: resp("SET", "t:" + i, blob, "EXAT", now // 1000 + 3600 + n,
                                       "XX"),
        "save": evalsha("save"),
        "eval_empty": evalsha("eval_empty"),
        "eval_args": evalsha("eval_args"),
        "save_hget": evalsha("save_hget"),
        "save_hset": evalsha("save_hset"),
        "multi": multi,
    }
    names = opts.variants or list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        sys.exit("redis_server_cost: unknown variant(s) %s; known: %s"
                 % (" ".join(unknown), " ".join(variants)))

    workdir = tempfile.mkdtemp(prefix="redis-server-cost-")
    server = Server(opts.port, workdir)
    try:
        for name in names:
            server.cli("FLUSHALL")
            server.pipe(fill())
            sha = server.cli("SCRIPT", "LOAD", scripts[name]) if name in scripts else None
            if sha:
                # Every script variant answers 1 on a session of the layout, also the second
                # time (after the first call rewrote it); -1 would mean the save declined (its
                # arguments or the layout changed), and the count would be of the wrong path.
                for n in (0, 1):
                    reply = server.cli(*evalsha_args(name, ids[0], n, sha))
                    if reply != "1":
                        sys.exit("redis_server_cost: %s answered %r, not 1" % (name, reply))
            pick = random.Random(1)
            data = b"".join(variants[name](ids[pick.randrange(SESSIONS)], n, sha)
                            for n in range(opts.calls))
            per_call = server.instructions(data) / opts.calls
            print("server_cost variant=%s instructions_per_call=%d" % (name, per_call),
                  flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
