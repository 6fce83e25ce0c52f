"""Evaluation: test words and tasks (`run`), answers from a real bridgex-serve (`client`), P@1 and its
statistics (`scoring`), the routing decision rule (`decision`) and the `calibrate` command's work
(`calibrate`)."""
