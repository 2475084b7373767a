"""The engine as replicas on a Ray Serve cluster (`--engine ray`, the `[ray]` extra; docs/scale-out.md).

`replica.py` is the deployment: each replica loads the checkpoint once and runs the same `Engine`, keeping
a bounded set of voices' features. `deployment.py` finds that one application on the cluster by name,
deploys it when absent and deletes it on command; `digest.py` is a voice's key there. `client.py` is what
each front process holds in place of a local engine: the faces, the voice library and the output store
stay in the front, and only features, text and audio travel. Imports `engine/` and `ray`, never a face;
nothing on the local path imports this package.
"""
