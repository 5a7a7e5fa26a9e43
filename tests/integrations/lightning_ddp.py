"""A 2-process Lightning DDP run over a prebake cache (CPU, gloo), run as a script by test_lightning.py.

Each rank writes the items it trained on, per epoch, to ``<out>/rank<R>.json``; with ``--source`` the
DataModule bakes it in ``prepare_data``; with ``--kill-at K`` it saves a checkpoint after K steps and
stops, and ``--resume CKPT`` continues from one.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch

from prebake.integrations.lightning import CacheDataModule


class Model(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 1)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).extend(batch["i"].tolist())
        return torch.nn.functional.mse_loss(self.lin(batch["x"]).squeeze(1), batch["y"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Stop(L.Callback):
    def __init__(self, step: int, path: str):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--kill-at", type=int)
    p.add_argument("--resume")
    p.add_argument("--source")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    callbacks = [Stop(args.kill_at, str(Path(args.out) / "mid.ckpt"))] if args.kill_at else []
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=args.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    model = Model()
    dm = CacheDataModule(args.cache, 3, seed=5, source=args.source, build={"workers": 0})
    trainer.fit(model, datamodule=dm, ckpt_path=args.resume)
    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    Path(args.out, f"rank{trainer.global_rank}.json").write_text(json.dumps({"seen": model.seen, "weights": weights}))
    if torch.distributed.is_initialized():  # gloo's threads, left to interpreter exit, can abort it (std::terminate)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
