"""Writes of the messaging pipeline, one job per module: accept, dispatch (chunks) and planning,
claim, deliver (batch, accounts, pacing), outcomes (retries), follow-ups (fallback, receipts),
roll-up, cancel and the sweeper."""
