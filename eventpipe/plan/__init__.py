"""``eventpipe plan``: size a Kubernetes deployment from measured numbers, then simulate its autoscalers.

Why this exists: replica counts, partitions, lag thresholds and disks in
``deploy/k8s/overlays/production`` must follow from measured per-core capacity,
not from guesses (docs/deploy.md derives each number). Given the peak request rate and the daily
volume, this prints the sizing with every assumption and where it came from
(a benchmark JSON in ``benchmarks/results/`` or a documented fallback), then
replays 24 hours of a daily traffic curve through a model of the Kubernetes HPA
controller (collectors) and of KEDA's Kafka lag scaler (processors) to show the
chosen bounds neither flap nor let lag run away. Pure Python; matplotlib is
needed only for the plot.

One module per job: assumptions (the numbers assumed, with their sources), capacities (measured
numbers from benchmarks/results), sizing, traffic (the daily curve), autoscalers (HPA and pod
models), simulation (the day through both autoscalers), report (text and plot), cli.
"""
