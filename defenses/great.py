"""GREAT, GREACE and GRE(AT+CE): gradient adversarial training (Sinha et al., Algorithm 1).

An auxiliary network f' classifies the main network's masked input gradient
g = (p_y - 1) * grad_x a_y into the label y.

- GREAT: the main network receives the auxiliary loss's gradient through g, reversed
  and scaled by alpha, so it learns gradients from which the class cannot be read
  (paper eq. 7, Algorithm 1 line 7).
- GREACE: the gradient of the loss w.r.t. the main logits gains beta * softmax(a') on
  the negative classes (eq. 6, Algorithm 1 line 8), softmax(a') held constant. Classes
  the auxiliary network confuses with y are pushed down harder. The auxiliary network
  is still trained, but no reversed gradient reaches the main network (alpha = 0), so g
  needs no second-order graph.
- GRE(AT+CE): both.

The masked gradient is differentiated in full by default, p_y - 1 included (the paper's
double back-propagation); ``hp.detach_confidence = true`` holds p_y - 1 constant (an
ablation). ``hp.aux_input_scale`` chooses how the auxiliary network scales its input
gradient tensor: "batch-rms" (default; one root-mean-square for the whole batch, not in
the paper, needed by auxiliaries without an early batch norm such as small-cnn) or "none".

Everything happens in one backward pass: the auxiliary loss trains f' directly and, via
the gradient-reversal layer on g, sends -alpha * its gradient into the main network.
The reversed gradient is taken with the auxiliary weights before their update (the
algorithm updates f' first); with one backward pass the difference is one step of lag.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import BenchError
from defenses.base import Defense, MethodContext, Ramp
from defenses.gradients import accuracy, grad_reverse, masked_input_gradient
from defenses.registry import DEFENSES


def greace_term(logits: torch.Tensor, aux_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """beta * mean_i sum_{k != y_i} stopgrad(softmax(a'_i))_k * a_ik.

    Its gradient w.r.t. the logits is beta * softmax(a') on the negative classes and 0 at
    y (divided by the batch size, like the mean cross-entropy it is added to).
    """
    weights = aux_logits.detach().softmax(dim=1).scatter(1, y[:, None], 0.0)
    return beta * (weights * logits).sum(dim=1).mean()


class GradientAdversarial(Defense):
    """Shared step of the three methods; subclasses choose which parts are on."""

    use_reversal: bool = True   # GREAT: reversed auxiliary gradient into the main network
    use_greace: bool = False    # GREACE: modified cross-entropy
    hyperparameters = ("alpha_max", "beta_max")
    hp_defaults = {"detach_confidence": False, "aux_input_scale": "batch-rms"}

    def __init__(self, model, ctx: MethodContext):
        super().__init__(model, ctx)
        hp = {**self.hp_defaults, **ctx.hp}
        if not isinstance(hp["detach_confidence"], bool):
            raise BenchError(f"hp.detach_confidence = {hp['detach_confidence']!r} is invalid: expected true or false")
        self.detach_confidence = hp["detach_confidence"]
        self.aux = ctx.make_aux(input_scale=str(hp["aux_input_scale"]))
        self.aux_opt = self.adam(self.aux)
        self._params = [p for p in list(model.parameters()) + list(self.aux.parameters()) if p.requires_grad]

    def modules(self):
        return {"model": self.model, "aux": self.aux}

    def optimizers(self):
        return {"model": self.opt, "aux": self.aux_opt}

    def losses(self, x, y, alpha: float, beta: float):
        """(total loss, logs). The total's gradient is everything the step applies: CE (+
        GREACE) and the reversed, alpha-scaled auxiliary gradient for the main network;
        the plain auxiliary loss gradient for the auxiliary network."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        # Second-order graph only when a reversed gradient will flow through g.
        g = masked_input_gradient(logits, x, y, create_graph=alpha > 0, detach_confidence=self.detach_confidence)
        aux_in = grad_reverse(g, alpha) if alpha > 0 else g.detach()
        aux_logits = self.aux(aux_in)
        aux_loss = F.cross_entropy(aux_logits, y)
        loss = ce + aux_loss
        if beta > 0:
            loss = loss + greace_term(logits, aux_logits, y, beta)
        logs = {"loss": ce.detach(), "aux_loss": aux_loss.detach(), "acc": accuracy(logits, y),
                "aux_acc": accuracy(aux_logits, y)}
        return loss, logs

    def step(self, x, y, ramp: Ramp):
        alpha = ramp.alpha if self.use_reversal else 0.0
        beta = ramp.beta if self.use_greace else 0.0
        self.zero(self.opt, self.aux_opt)
        loss, logs = self.losses(x, y, alpha, beta)
        # inputs=params: no gradient is accumulated into x, which nothing needs.
        torch.autograd.backward(loss, inputs=self._params)
        self.opt.step()
        self.aux_opt.step()
        return logs


@DEFENSES.register("great")
class GREAT(GradientAdversarial):
    use_reversal, use_greace = True, False
    hyperparameters = ("alpha_max",)


@DEFENSES.register("greace")
class GREACE(GradientAdversarial):
    use_reversal, use_greace = False, True
    hyperparameters = ("beta_max",)


@DEFENSES.register("great-ce")
class GREATCE(GradientAdversarial):
    """GRE(AT+CE): reversed auxiliary gradient and the GREACE loss together."""

    use_reversal, use_greace = True, True
