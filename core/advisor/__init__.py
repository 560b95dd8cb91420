"""Reading a run and deciding how to continue it: the five-scenario diagnosis, the next phase's proposal
and its time estimate (advise), and the pre-continue checklist with its gate (checklist)."""
