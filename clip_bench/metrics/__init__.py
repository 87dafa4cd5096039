"""Pure array maths: classification metrics, confidence intervals and paired tests, retrieval recall."""
