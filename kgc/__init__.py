"""kgc: knowledge-graph completion with a contrastive bi-encoder (SimKGC-style).

Data flows one way through the package, one module per step:

    data (raw files -> graph of ids) -> answers (known true answers) -> graph (DGL)
    -> texts -> tokens (token cache) -> batches -> encoder -> losses / queues
    -> embeddings -> ranks (scores -> filtered ranks) -> metrics
    -> train / evaluate / predict -> cli
"""

__version__ = "0.1.0"


def load(checkpoint_dir, data_dir=None, device=None):
    """Load a trained checkpoint for prediction (see :class:`kgc.predict.Predictor`)."""
    from kgc.predict import Predictor

    return Predictor.load(checkpoint_dir, data_dir=data_dir, device=device)


def predict(checkpoint_dir, head, relation, top_k=10, data_dir=None):
    """Rank candidate tails for one ``(head, relation)`` query; returns ``[(entity_id, text, score), ...]``."""
    return load(checkpoint_dir, data_dir=data_dir).predict(head, relation, top_k=top_k)
