"""What identifies a cell of a compare.sh grid, shared by the report scripts.

A run record or summary cell carries the link (rtt_ms, loss_pct, loss_model,
rate_mbit, queue_bdp, jitter_ms, reorder) and the controller pair (cc, as
"HTTP/2's/HTTP/3's"); records from before these fields existed read as the
defaults (Bernoulli loss, the lab's queue, no jitter, no reordering).
"""


def key(c):
    """A sortable tuple: workload, then the link, then the controllers."""
    return (c.get("workload", ""), c.get("rtt_ms", 0), c.get("loss_pct", 0), c.get("loss_model") or "bernoulli",
            c.get("rate_mbit", 0) or 0, c.get("queue_bdp", 0) or 0, c.get("jitter_ms", 0) or 0,
            bool(c.get("reorder")), c.get("cc") or "")


KEY_FIELDS = ("workload", "rtt_ms", "loss_pct", "loss_model", "rate_mbit", "queue_bdp", "jitter_ms", "reorder", "cc")


def from_key(k):
    """The cell (a dict of KEY_FIELDS) a key() tuple stands for."""
    return dict(zip(KEY_FIELDS, k))


def link_key(c):
    """The cell without its workload."""
    return key(c)[1:]


def conditions(c):
    """The link and controllers beyond RTT and loss, in words ('' for the plain cell)."""
    parts = []
    if (c.get("loss_model") or "bernoulli") != "bernoulli" and c.get("loss_pct"):
        parts.append(c["loss_model"])
    if c.get("rate_mbit"):
        q = c.get("queue_bdp") or 0
        parts.append(f"{c['rate_mbit']:g} Mbit/s" + (f", queue {q:g}×BDP" if q else ""))
    if c.get("jitter_ms"):
        parts.append(f"jitter ±{c['jitter_ms']:g} ms" + (" reordering" if c.get("reorder") else ""))
    if c.get("cc"):
        parts.append(c["cc"])
    return ", ".join(parts)


def title(c):
    """A figure title that names the controller pair, RTT, loss model and rate."""
    loss = c.get("loss_pct", 0)
    model = c.get("loss_model") or "bernoulli"
    t = f"RTT {c.get('rtt_ms', 0):g} ms, loss {loss:g} %" + (f" {model}" if loss else "")
    rest = conditions({**c, "loss_model": "bernoulli"})
    return t + (f", {rest}" if rest else "")


def slug(c):
    """A file-name part for the cell (no workload)."""
    s = f"rtt{c.get('rtt_ms', 0):g}-loss{c.get('loss_pct', 0):g}"
    if (c.get("loss_model") or "bernoulli") != "bernoulli":
        s += "-" + c["loss_model"]
    if c.get("rate_mbit"):
        s += f"-rate{c['rate_mbit']:g}"
        if c.get("queue_bdp"):
            s += f"-q{c['queue_bdp']:g}"
    if c.get("jitter_ms"):
        s += f"-jitter{c['jitter_ms']:g}" + ("r" if c.get("reorder") else "")
    if c.get("cc"):
        s += "-" + c["cc"].replace("/", "-")
    return s
