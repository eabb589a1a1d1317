#!/usr/bin/env python3
"""quic-sim.py - discrete-event simulation of core selection for QUIC packet
protection on many crypto cores (SIMULATED figures: this machine has two
cores). Poisson arrivals from N connections with Zipf(s) rates; each job is
one packet whose service time is drawn from a lognormal fitted to measured
p50/p99 service times, plus a measured hand-off cost. Policies:

  sjbsqK  the connection's hashed core unless it holds K jobs, then the next
          core with fewer than K, else the job waits in the central queue
  hash    the connection's hashed core, unbounded queue
  jsq     the core with the fewest jobs

Completions go through a per-connection re-sequencer: a job that finishes
before an earlier job of its connection is counted out of order and held.
Latency is arrival to delivery (after re-sequencing).

Prints one line per (policy, load): p50/p99 latency, out-of-order share.
"""

import argparse
import bisect
import heapq
import math
import random
from collections import deque


def zipf_weights(n, s):
    w = [1.0 / (i + 1) ** s for i in range(n)]
    total = sum(w)
    return [x / total for x in w]


def simulate(policy, load, a):
    rng = random.Random(a.seed)
    mu = math.log(a.p50)
    sigma = max((math.log(a.p99) - mu) / 2.326, 1e-6)
    mean = math.exp(mu + sigma * sigma / 2) + a.handoff
    rate = load * a.cores / mean  # jobs per ns
    weights = zipf_weights(a.conns, a.zipf)
    cum = []
    acc = 0.0
    for x in weights:
        acc += x
        cum.append(acc)
    home = [rng.randrange(a.cores) for _ in range(a.conns)]  # hash(CID) % cores
    bound = int(policy[5:]) if policy.startswith("sjbsq") else 0

    qlen = [0] * a.cores
    fifo = [deque() for _ in range(a.cores)]
    central = deque()
    events = []  # (time, seq, core)
    next_seq = [0] * a.conns
    deliver_next = [0] * a.conns
    held = [dict() for _ in range(a.conns)]
    lat = []
    ooo = 0
    delivered = 0
    warm = a.packets // 10

    def pick(conn):
        h = home[conn]
        if policy == "hash":
            return h
        if policy == "jsq":
            best = h
            for i in range(a.cores):
                c = (h + i) % a.cores
                if qlen[c] < qlen[best]:
                    best = c
            return best
        for i in range(a.cores):
            c = (h + i) % a.cores
            if qlen[c] < bound:
                return c
        return -1

    def place(job, c, now):
        qlen[c] += 1
        fifo[c].append(job)
        if qlen[c] == 1:
            start(c, now)

    def start(c, now):
        s = rng.lognormvariate(mu, sigma) + a.handoff
        heapq.heappush(events, (now + s, id(fifo[c][0]), c))

    t = 0.0
    arrivals = 0
    next_arrival = rng.expovariate(rate)
    while arrivals < a.packets or events:
        if arrivals < a.packets and (not events or next_arrival <= events[0][0]):
            t = next_arrival
            conn = min(bisect.bisect_left(cum, rng.random()), a.conns - 1)
            job = (conn, next_seq[conn], t, arrivals)
            next_seq[conn] += 1
            arrivals += 1
            c = pick(conn)
            if c < 0:
                central.append(job)
            else:
                place(job, c, t)
            next_arrival = t + rng.expovariate(rate)
            continue
        t, _, c = heapq.heappop(events)
        conn, seq, arr, idx = fifo[c].popleft()
        qlen[c] -= 1
        if fifo[c]:
            start(c, t)
        while central:
            d = pick(central[0][0])
            if d < 0:
                break
            place(central.popleft(), d, t)
        # the re-sequencer
        if seq != deliver_next[conn]:
            ooo += idx >= warm
            held[conn][seq] = (arr, idx)
            continue
        items = [(arr, idx)]
        deliver_next[conn] += 1
        while deliver_next[conn] in held[conn]:
            items.append(held[conn].pop(deliver_next[conn]))
            deliver_next[conn] += 1
        for arr_i, idx_i in items:
            if idx_i >= warm:
                lat.append(t - arr_i)
                delivered += 1
    lat.sort()
    return (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            100.0 * ooo / max(1, delivered))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--p50", type=float, required=True, help="measured service p50, ns")
    ap.add_argument("--p99", type=float, required=True, help="measured service p99, ns")
    ap.add_argument("--handoff", type=float, default=0.0, help="measured hand-off cost, ns")
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--packets", type=int, default=60000)
    ap.add_argument("--loads", default="0.5,0.6,0.7,0.8,0.9,0.95")
    ap.add_argument("--policies", default="sjbsq2,sjbsq4,hash,jsq")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    print("# SIMULATED %s: %d cores, %d connections, Zipf s=%.2f, seed %d, %d packets/run, "
          "service lognormal p50 %.0f ns p99 %.0f ns + hand-off %.0f ns" %
          (a.label, a.cores, a.conns, a.zipf, a.seed, a.packets, a.p50, a.p99, a.handoff))
    print("# policy load p50_ns p99_ns out_of_order_pct")
    for policy in a.policies.split(","):
        for load in (float(x) for x in a.loads.split(",")):
            p50, p99, ooo = simulate(policy, load, a)
            print("%s %.2f %.0f %.0f %.2f" % (policy, load, p50, p99, ooo))


if __name__ == "__main__":
    main()
