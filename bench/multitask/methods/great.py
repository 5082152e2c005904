"""``great``: GREAT for multi-task learning (paper section 2.3, Algorithm 3, eq. 9).

One step:
1. f = encoder(x) (one forward); decoder i reads GAL_i(f), which is the identity forward.
2. C_i = J_i / C_i^0: task losses divided by their first-batch values (line 4).
3. One backward through the decoders gives the decoder gradients (line 6) and each task's
   gradient g_i = dC_i / d(GAL_i(f)) at the shared feature (line 5).
4. One backward through the encoder with the roots GAL_i(f) and gradients g_i: each GAL
   multiplies its g_i by gamma_i, autograd sums them at f, so the encoder receives
   sum_i gamma_i * g_i (line 7) and runs backward once.
5. The task classifier reads the scaled gradients gamma_i * g_i (g_i held constant) and
   predicts the task (line 8); it minimises the cross-entropy (line 9) and, through a
   gradient-reversal layer, the GALs receive the reversed gradient (lines 10-11).

GAL positivity: the paper keeps GALs positive with a low learning rate; here they are also
clamped to at least ``gal_min`` after each update, which guarantees it whatever the rate.
The task classifier's input is divided by its root-mean-square over the whole batch (one
scalar shared by every task, differentiated like the rest): gradients of normalised losses
are tiny (below batch-norm's epsilon), and one common scale keeps the differences between
tasks intact. Differentiating the scale makes the classifier's input, and so its loss,
invariant to a common rescaling of all GALs: the GALs' gradient is then orthogonal to
them (Euler, degree 0) and carries no common-mode part that would only shrink or grow
every GAL together (a detached scale gave cos(grad gamma, gamma) = -0.19).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.multitask.gal import GALs
from bench.multitask.methods.base import MULTITASK_METHODS, InitialLosses, MultiTaskMethod
from bench.multitask.network import TaskClassifier, feature_shape
from defenses.gradients import accuracy, grad_reverse


@MULTITASK_METHODS.register("great")
class GREATMultiTask(MultiTaskMethod):
    hyperparameters = ("gal_lr",)
    # GALs are clamped to at least gal_min (they must stay positive); aux_blocks: the task
    # classifier's depth.
    hp_defaults = {"gal_min": 1e-3, "aux_blocks": 4}

    def __init__(self, model, ctx):
        super().__init__(model, ctx)
        shape = feature_shape(model.encoder, ctx.spec)
        n = len(self.tasks)
        self.gals = GALs(self.names, shape).to(ctx.device)
        self.aux = TaskClassifier(shape[0], n, blocks=int(self.hp_value("aux_blocks"))).to(ctx.device)
        self.initial = InitialLosses(n).to(ctx.device)
        self.aux_opt = self.adam(self.aux)
        self.gal_opt = self.adam(self.gals, lr=float(ctx.hp.get("gal_lr", self.lr)))
        self.gal_min = float(self.hp_value("gal_min"))
        self.enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
        self.dec_params = [p for p in model.decoders.parameters() if p.requires_grad]
        self.aux_params = [p for p in self.aux.parameters() if p.requires_grad]

    def modules(self):
        return {"model": self.model, "gals": self.gals, "aux": self.aux, "initial": self.initial}

    def optimizers(self):
        return {"model": self.opt, "aux": self.aux_opt, "gals": self.gal_opt}

    def task_classifier_loss(self, grads: list[torch.Tensor], reverse: bool = True):
        """Cross-entropy of the task classifier on gamma_i * g_i; with ``reverse`` the GALs get
        the negated gradient (the classifier itself is unaffected: reversal sits before it)."""
        g = torch.stack([gi.detach() for gi in grads])            # (tasks, B, C, H, W)
        scaled = (g * self.gals.weight[:, None]).flatten(0, 1)    # differentiable in the GALs
        scaled = scaled / scaled.pow(2).mean().sqrt().clamp_min(1e-20)
        if reverse:
            scaled = grad_reverse(scaled, 1.0)
        logits = self.aux(scaled)
        labels = torch.arange(len(grads), device=logits.device).repeat_interleave(grads[0].shape[0])
        return F.cross_entropy(logits, labels), logits, labels

    def backward_pass(self, x, y):
        """Fill every .grad of one step (no optimizer step); return the logs."""
        self.zero(self.opt, self.aux_opt, self.gal_opt)
        f = self.model.encoder(x)
        h = [self.gals(f, i) for i in range(len(self.tasks))]
        raw = torch.stack([t.loss(self.model.decoders[t.name](h[i]), y[t.name]) for i, t in enumerate(self.tasks)])
        normalised = raw / self.initial.capture(raw)
        grads = torch.autograd.grad(normalised.sum(), h + self.dec_params)
        g, dec_grads = list(grads[: len(h)]), grads[len(h):]
        for p, gr in zip(self.dec_params, dec_grads):
            p.grad = gr
        # Encoder: back through the GALs (scaling each g_i by gamma_i), summed at f, once.
        torch.autograd.backward(h, grad_tensors=g, inputs=self.enc_params)
        aux_loss, logits, labels = self.task_classifier_loss(g, reverse=True)
        torch.autograd.backward(aux_loss, inputs=self.aux_params + [self.gals.weight])
        gal_mean = self.gals.weight.detach().flatten(1).mean(1)
        return self.logs(raw, gal_mean, aux_loss=aux_loss.detach(), aux_acc=accuracy(logits, labels),
                         gal_min=self.gals.weight.detach().min())

    def step(self, x, y, ramp):
        logs = self.backward_pass(x, y)
        self.opt.step()
        self.aux_opt.step()
        self.gal_opt.step()
        self.gals.keep_positive(self.gal_min)
        return logs
