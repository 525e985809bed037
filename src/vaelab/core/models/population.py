"""A population: several VAEs of the same input trained by one compiled step.

``Population(members)`` is a Keras model whose input is a list of the members' inputs,
one per member (each ``(batch, ...)``, or ``[images, labels]`` for a conditional VAE); member
``i`` runs on ``inputs[i]`` and its loss is its own
(:meth:`VAEModel.loss_terms`: its likelihood, objective, KL scale, β, free bits and KL
weight). The population's loss is the sum of the members' losses, so the gradient with
respect to member ``i``'s weights is exactly the gradient of its own loss; one Adam over
all the variables then updates every member as its own Adam would (Adam works variable
by variable, and the step counter counts the same steps). Each member keeps its own
weights, its sampling layer's noise generator and KL weight: a member trains as it
would alone, on the batches it is fed.

The history gets ``loss`` (the sum) and, per member ``i``, ``loss[i]`` and its terms
(``reconstruction_loss[i]``, ``kl_loss[i]``, …), validation ones with ``val_`` in front.
"""

from __future__ import annotations

import types

import keras
from keras import ops

from vaelab.core.keras_seam import ScannedSteps, copy_adam_state
from vaelab.core.models.vae import VAEModel


def member_key(name: str, index: int) -> str:
    """The history name of member ``index``'s value ``name``: ``loss[2]``."""
    return f"{name}[{index}]"


def member_logs(logs: dict, index: int) -> dict:
    """Member ``index``'s logs under their own names, with the population-wide ones
    (a learning rate, say) but not the population's summed ``loss``/``val_loss``."""
    tail = f"[{index}]"
    own = {}
    for key, value in logs.items():
        if key.endswith(tail):
            own[key[:-len(tail)]] = value
        elif not key.endswith("]") and key not in ("loss", "val_loss"):
            own[key] = value
    return own


@keras.saving.register_keras_serializable(package="vaelab")
class Population(ScannedSteps, keras.Model):
    """``P`` compiled :class:`VAEModel` members trained together (see the module docstring).

    Never saved itself (each member is, in its own run folder); registered like every Keras
    class vaelab defines, so that nothing of vaelab's is unknown to Keras' loader.

    Args:
        members: the member models, built, each taking inputs of the same structure.
    """

    def __init__(self, members: list[VAEModel], name: str = "population"):
        super().__init__(name=name)
        if len(members) < 1:
            raise ValueError("a population needs at least one member")
        self.members = list(members)
        trackers = []
        self._terms = []  # per member: its term names, loss first, and their trackers' slice
        for i, member in enumerate(self.members):
            names = ("loss", *member.term_names())
            self._terms.append((names, len(trackers)))
            trackers += [keras.metrics.Mean(name=member_key(n, i)) for n in names]
        self.member_trackers = trackers
        self._scratch = types.SimpleNamespace(losses={})  # layer losses of the current pass
        self.built = True

    def _column(self, structure, index: int):
        """Member ``index``'s part of the population's input (a list, one entry per member)."""
        if not isinstance(structure, (list, tuple)) or len(structure) != len(self.members):
            raise ValueError(f"a population of {len(self.members)} takes a list of as many "
                             f"member inputs")
        return structure[index]

    def call(self, inputs, training=None):
        outputs = []
        for i, member in enumerate(self.members):
            outputs.append(member(self._column(inputs, i), training=training))
            self._scratch.losses[i] = list(member.losses)  # its sampling layer's KL term
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        batch = ops.shape(y_pred[0])[0]  # as Keras weights a loss tracker
        total = None
        for i, member in enumerate(self.members):
            targets = None if y is None else self._column(y, i)
            terms = member.loss_terms(self._column(x, i), targets, y_pred[i], sample_weight,
                                      self._scratch.losses.get(i, []))
            names, start = self._terms[i]
            for name, tracker in zip(names, self.member_trackers[start:start + len(names)]):
                tracker.update_state(terms[name], sample_weight=batch)
            total = terms["loss"] if total is None else total + terms["loss"]
        return total

    def export_optimizer_state(self, index: int) -> None:
        """Copy member ``index``'s part of the population's Adam state (step counter,
        learning rate, moments) into the member's own optimizer, so that saving the member
        saves what its alone run would."""
        member = self.members[index]
        copy_adam_state(self.optimizer, member.optimizer, member.trainable_variables)
