"""Heart-sound contrastive pretraining (seed 004, PA-HCL) fed three ways: the seed's pipelines and prebake."""
