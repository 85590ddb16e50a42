"""Schemathesis hooks of node/tests/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

The run injects faults through POST /admin/faults like any other call, but not those that stop
the node under test: `crash` exits the process (in the test, the test's own: the node runs
inside it), `restart` replaces it by a fresh run (a node inside a test answers 400) and `pause`
holds every request for up to 10 minutes. Every other fault is sent: on a standalone node those
that name peers answer 400, `heal` answers 200.
"""

import schemathesis

STOPS_THE_NODE = {"crash", "restart", "pause"}


@schemathesis.hook
def filter_case(context, case):
    body = case.body
    kind = body.get("kind") if isinstance(body, dict) else None
    return not (isinstance(kind, str) and kind in STOPS_THE_NODE)
