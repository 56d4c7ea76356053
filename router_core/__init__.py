"""PORT routing core: history, embeddings, ANN index, estimator, dual solvers, policies.

A plain library: it imports neither Kafka nor Faust, so the offline evaluator and the
stream service share exactly the same algorithm.
"""
