"""Heart-sound contrastive pretraining (PA-HCL) fed three ways: the original pipelines and prebake."""
