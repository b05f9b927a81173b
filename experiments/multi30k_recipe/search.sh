#!/usr/bin/env bash
# Recipe search for the main job (issue 16), on Multi30k val only; test2016 is never scored here.
#   bash experiments/multi30k_recipe/search.sh [ROOT] [NAME...]   (default ROOT runs/multi30k_recipe)
# Runs the candidates below one at a time (a shared 2-core machine: never two trainings at once)
# with the project's own runner, each a shortened proxy of the paper's recipe (post-LN, Eq. 3,
# eps_ls 0.1 unless a candidate sets it, checkpoint averaging, beam search) that ends by
# translating val only (final_eval_splits=('val',)). Rerunning skips finished runs and resumes
# an interrupted one (Eq. 3 does not depend on train.steps, so a run stopped early is the prefix
# of a longer one).
# Then collect.py writes ROOT/results.md (both val BLEUs recomputed from ROOT/NAME/val.hyp).
set -euo pipefail
root=${1:-runs/multi30k_recipe}
shift || true
# Wu et al. 2021's Transformer-Tiny: 4+4 layers, d_model 128, d_ff 256, h 4, P_drop 0.3.
tiny="--config.model.d_model=128 --config.model.d_ff=256 --config.model.h=4
  --config.model.d_k=32 --config.model.d_v=32 --config.model.n_layers=4 --config.model.p_drop=0.3"
# p3's and p6's training: 2048-token batches, warmup 800, 7000 steps (about 30 epochs), the
# last 10 checkpoints (every 200 steps) averaged, beam 5; each adds its own lr_scale.
tiny_long="--config.data.tokens_per_batch=2048 --config.train.steps=7000
  --config.train.warmup_steps=800 --config.train.checkpoint_every=200
  --config.train.keep_checkpoints=10 --config.train.average_last=10 --config.train.eval_every=500
  --config.decode.beam_size=5"
# The default at beb7515 (P_drop 0.1, alpha 1.0, eps_ls 0.2, vocab 6000), as overrides of the
# baseline below: the starting point of p12 and every candidate after it but p13 and p17.
BEB7515="--config.model.p_drop=0.1 --config.decode.alpha=1.0 --config.train.eps_ls=0.2
  --config.data.vocab_size=6000"
# p24, p25 and p25's second seed: N 2+2 at beb7515's recipe for 4700 steps (the default's
# time at N 2+2's 0.72x step), 10 checkpoints kept.
N2_4700="$BEB7515 --config.model.n_layers=2 --config.train.steps=4700
  --config.train.keep_checkpoints=10"
# p27 and its second seed: N 2+2 with d_ff 2048 at beb7515's recipe, 10 checkpoints kept.
N2_FF2048="$BEB7515 --config.model.n_layers=2 --config.model.d_ff=2048
  --config.train.keep_checkpoints=10"
# p28 and its second seed: P_drop 0.15 at beb7515's recipe, 10 checkpoints kept.
DROP015="$BEB7515 --config.model.p_drop=0.15 --config.train.keep_checkpoints=10"
# p30 and its second seed: attention-weight dropout 0.1 at beb7515's recipe, 10 kept.
ATTDROP01="$BEB7515 --config.model.p_drop_attn=0.1 --config.train.keep_checkpoints=10"

declare -A CANDIDATES=(
  # Tiny as Wu et al. train it: ~10k shared BPE; 4096-token batches, warmup 1000, peak lr
  # 1.5 x 128^-0.5 x 1000^-0.5.
  [p1_tiny]="$tiny --config.data.vocab_size=10000 --config.data.tokens_per_batch=4096
    --config.train.steps=1500 --config.train.warmup_steps=1000 --config.train.lr_scale=1.5"
  # The same model on p1's lesson: 2048-token batches (about 236 updates an epoch, as the main
  # job), warmup 400 (1.7 epochs), 4000 steps (about 17 epochs), the last 10 checkpoints
  # averaged (every 200 steps) and beam 5, as Wu et al.
  [p2_tiny]="$tiny --config.data.vocab_size=10000 --config.data.tokens_per_batch=2048
    --config.train.steps=4000 --config.train.warmup_steps=400 --config.train.lr_scale=1.5
    --config.train.checkpoint_every=200 --config.train.keep_checkpoints=10
    --config.train.average_last=10 --config.train.eval_every=500 --config.decode.beam_size=5"
  # p2's lesson: keep Eq. 3's peak near the main job's. lr_scale 0.7 and warmup 800 as the main
  # job (peak 0.7 x 128^-0.5 x 800^-0.5 = 2.2e-3, 1.4x the main job's at d_model 256), the main
  # job's 8000-piece vocabulary (cheaper output layer), 7000 steps (about 30 epochs: Tiny trains
  # about 1.9x the main job's target tokens/s, fixed-shape benchmark), last 10 checkpoints
  # (every 200 steps) averaged, beam 5.
  [p3_tiny]="$tiny $tiny_long --config.train.lr_scale=0.7"
  # p3 trained at about 5,200 target tokens/s, 2.3x the main job's model on the same VM, but
  # learned far less per step (val PPL 45.9 at step 1000, the main job 21.9), so at equal
  # training time it was level with p4 below, not ahead (45.9 after 6.3 min; p4 42.2 after 6.9
  # min at step 500); stopped at step 1300. p4 keeps the main job's model and makes its few
  # epochs count: the main job's val PPL was still falling steeply at step 3400 and its
  # dropout-on train NLL was at its val NLL. Peak rate 1.43x (lr_scale 1.0, peak 2.2e-3),
  # P_drop 0.2, the last 10 checkpoints (every 100 steps) averaged, beam 5.
  [p4_main_lr1_drop02]="--config.model.p_drop=0.2 --config.train.lr_scale=1.0
    --config.train.checkpoint_every=100 --config.train.keep_checkpoints=10
    --config.train.average_last=10 --config.train.eval_every=500 --config.decode.beam_size=5"
  # p3 learned too slowly per step and p2 (peak 6.6e-3, warmup 400) diverged: p6 is p3 with
  # twice its peak rate, lr_scale 1.4 with warmup 800 (1.4 x 128^-0.5 x 800^-0.5 = 4.4e-3),
  # to see whether Tiny's 2.3x speed then buys more than the main job's model at equal time.
  [p6_tiny_lr14]="$tiny $tiny_long --config.train.lr_scale=1.4"
  # p4/p5 changed the rate, P_drop and the steps at once; p7 changes only the rate (lr_scale
  # 1.0) at the baseline's P_drop 0.3 and 3400 steps, averaging the last 10 checkpoints. It ran
  # as the README command with these overrides (the same training, without this script's val
  # evaluations every 250 steps). Behind the baseline on val PPL from step 1500 on (7.72
  # against 6.72): rejected.
  [p7_main_lr1]="--config.train.lr_scale=1.0 --config.train.keep_checkpoints=10
    --config.train.average_last=10"
  # p7 says p5's early lead (val PPL 42.2 against 68.7 at step 500) came from P_drop 0.2, not
  # the rate. p8 changes only P_drop (0.2) at the baseline's rate (lr_scale 0.7), steps (3400),
  # averaging (last 5) and beam (4 / alpha 0.6).
  [p8_main_drop02]="--config.model.p_drop=0.2"
  # p8 was ahead of the baseline at every val evaluation (averaged val PPL 5.70 against 6.72)
  # and became the default. p9, the next step in the same direction: P_drop 0.1 (the paper's
  # base). It was level with p8 within noise (val PPL 5.62, +0.35 val BLEU, paired bootstrap
  # p = 0.17) and stopped improving from step 2750; a second seed (below) settled it for 0.1.
  [p9_main_drop01]="--config.model.p_drop=0.1"
  # p8 with another seed of parameters and dropout (train.seed 1; same batches): how far one
  # recipe moves between seeds on val, to read p9's +0.35 against. It moved 0.42 BLEU at alpha
  # 0.6 and 0.03 at alpha 1.0, where p9 is +0.35 over both: next, p9 with train.seed 1.
  [p8_main_drop02_seed1]="--config.model.p_drop=0.2 --config.train.seed=1"
  # p9 with train.seed 1 (same batches): does p9's +0.35 over both p8 seeds survive a second
  # p9 seed? It did (val BLEU 40.10 at alpha 1.0; two-seed mean 39.84 against p8's 39.235):
  # P_drop 0.1 became the default.
  [p9_main_drop01_seed1]="--config.model.p_drop=0.1 --config.train.seed=1"
  # The main job as of a7cd1f4 (p9's training, alpha 1.0) keeping its last 10 checkpoints
  # (steps 2500-3400, every 100) instead of 5, so that averaging the last 5, 8 and 10 can be
  # compared on the same training (p9's val PPL was flat from step 2750 on). Rule fixed before
  # the run: the main job averages the N of {5, 8, 10} with the highest val sacreBLEU at alpha
  # 1.0, if it beats N = 5 by more than 0.2 BLEU (about the seed noise seen at alpha 1.0);
  # otherwise it stays at 5. Result: 39.60 / 39.55 / 39.39 for N = 5 / 8 / 10 (val PPL 5.55 /
  # 5.52 / 5.52): it stays at 5. Then, on the same average of 5, beam 5 and 6 at alpha 1.0 and
  # alpha 0.8 and 1.2 at beam 4 (rule written while they ran, before any was read: a change
  # only for more than 0.3 BLEU over beam 4 / alpha 1.0).
  [p10_main_keep10]="--config.model.p_drop=0.1 --config.decode.alpha=1.0
    --config.train.keep_checkpoints=10 --config.train.average_last=10"
  # The main job with eps_ls 0.2 (label smoothing, Section 5.4) instead of 0.1: P_drop 0.1's
  # val NLL stops falling from step 2750 (p9, p10), and more smoothing regularizes at no cost
  # per step. Rule fixed before the run: if its val sacreBLEU at alpha 1.0 (average of 5) beats
  # p10's 39.60 by more than 0.3, it gets a second seed before the default changes (as p9 did).
  # Result: 40.01 (+0.41): a second seed next; it becomes the default only if its two-seed mean
  # beats P_drop 0.1's (39.84).
  [p11_main_ls02]="--config.model.p_drop=0.1 --config.decode.alpha=1.0
    --config.train.eps_ls=0.2"
  # p11 with train.seed 1 (same batches), by p11's rule: eps_ls 0.2 becomes the default only if
  # the mean val sacreBLEU (beam 4, alpha 1.0) of p11's two seeds beats P_drop 0.1's 39.84.
  # eps_ls 0.2's outputs ran 5% short (brevity penalty 0.948 on val), so after this run both
  # p11 seeds' averages of 5 are also decoded on val at alpha 1.2 and 1.4 (beam 4). Rule fixed
  # before either is decoded: if eps_ls 0.2 becomes the default, it takes the alpha of {1.0,
  # 1.2, 1.4} with the highest two-seed mean val sacreBLEU, if that beats alpha 1.0's mean by
  # more than 0.3 (p10's rule for decoding); otherwise alpha stays 1.0.
  # Result: seed 1 39.87 (two-seed mean 39.94 > 39.84: eps_ls 0.2 is to become the default);
  # alpha 1.2 / 1.4 means 40.05 / 40.24, +0.11 / +0.30 over 1.0, not more than 0.3: alpha stays 1.0.
  [p11_main_ls02_seed1]="--config.model.p_drop=0.1 --config.decode.alpha=1.0
    --config.train.eps_ls=0.2 --config.train.seed=1"
  # The main job as of c72eb28 (P_drop 0.1, eps_ls 0.2, alpha 1.0) with a 6000-piece shared
  # BPE vocabulary instead of 8000: Multi30k is low-resource (29k pairs), where smaller subword
  # vocabularies have been reported to help (Sennrich & Zhang 2019; Gowda & May 2020), and the
  # output layer (d_model x vocab) is about a quarter of the step's matmul work. Rule fixed
  # before the run: if its val sacreBLEU (beam 4, alpha 1.0, average of 5) beats p11's two-seed
  # mean 39.94 by more than 0.3, it gets a second seed (train.seed 1); it becomes the default
  # only if its two-seed mean beats 39.94 and the README command stays under 60 minutes.
  # Time rule, added before the run (2026-12-03): the fresh-clone README command at c72eb28 took
  # 59.8 min on the slowest VM seen (train_step.py small 1,770-1,870 tok/s), so the default must
  # be cut to <= 57 min there (5% margin). Eq. 3 does not depend on train.steps, so averaging
  # checkpoints S-400..S of a longer run gives exactly an S-step run; this run keeps 10. Scored
  # on val for S = 3000..3400 here, and for p10 (vocab 8000, eps_ls 0.1, which kept 10), with
  # each S's command time projected from the measured per-step times (compiles not scaled).
  # (a) vocab 6000 at the largest S that fits; (b) vocab 8000 at the largest S that fits, its
  # val taken as 39.94 + p10's (val at S - val at 3400). The default becomes (a) if its val
  # sacreBLEU >= (b)'s, else (b); the BLEU rule above still decides a second seed.
  [p12_main_vocab6k]="$BEB7515 --config.train.keep_checkpoints=10"
  # Result: val sacreBLEU 40.43 (+0.49 over 39.94): a second seed next, by the BLEU rule. Time
  # rule: train_step.py --sizes=small,small6k,small,small6k (same VM, idle) gave vocab 6000's
  # step 0.866x vocab 8000's, so at c72eb28's slowest-VM speed the command would take about
  # 105 + 250 + (3485 - 250) x 0.866 = 3,157 s (52.6 min) at 3400 steps: (a) is 3400 steps.
  # p12 with train.seed 1 (same vocabulary and batches). Vocab 6000 becomes the default only if
  # the two seeds' mean val sacreBLEU (beam 4, alpha 1.0) beats p11's 39.94 and the time rule
  # above picks it.
  [p12_main_vocab6k_seed1]="$BEB7515 --config.train.seed=1"
  # Result: val sacreBLEU 39.96 (lc Moses 40.08), val PPL 5.50; the two seeds' mean 40.20 beats
  # 39.94 and the time rule picked 3400 steps, so vocab 6000 became the default (beb7515). Its
  # loop time (3,774 s) is not a speed figure: a local .ci/run shared the 2 cores for ~20 min.
  # p13: the default at beb7515 (P_drop 0.1, eps_ls 0.2, alpha 1.0, vocab 6000) with a
  # 4000-piece vocabulary, on the trend of p12 (8000 -> 6000: +0.26 in the two-seed mean;
  # smaller BPE vocabularies help in low-resource NMT, Sennrich and Zhang 2019). Rules written
  # before it ran: more than 0.3 over vocab 6000's two-seed mean 40.20 earns a second seed; vocab
  # 4000 becomes the default only if the two seeds' mean beats 40.20. Its step is shorter
  # (train_step.py size small4k), so time does not stop it at 3400 steps.
  [p13_main_vocab4k]="--config.model.p_drop=0.1 --config.decode.alpha=1.0
    --config.train.eps_ls=0.2 --config.data.vocab_size=4000"
  # Result: val sacreBLEU 38.67 (lc Moses 38.80, BP 0.926), val NLL per sentence 30.46 (vocab
  # 6000: 30.34 / 30.19): -1.53 against 40.20, so no second seed; vocab 6000 stays the default.
  # p14 (session 18): the default at beb7515 with batches of 1024 target tokens instead of 2048,
  # at the same number of target tokens (6800 steps, 13.8 epochs) and Eq. 3 stretched to the
  # same schedule in tokens with Adam's square-root rule: warmup 1600 steps (the same tokens as
  # 800 of 2048) at lr_scale 0.7, so at every token count the rate is 1/sqrt(2) of the
  # 2048-token run's (s and w doubled in d^-0.5 x min(s^-0.5, s x w^-1.5)). On the 2-core CPU a
  # step's cost per target token is level from 512 to 2048 tokens (fixed-shape steps of the
  # main job's model, session 18: 2,730-3,030 tok/s at 512, 1024 and 2048), so this doubles the
  # updates at the same compute; small batches have been reported to help low-resource NMT
  # (Atrio and Popescu-Belis 2021). Checkpoints every 200 steps, the last 5 averaged (the same
  # token span as 3000-3400), 10 kept; val PPL every 500 steps (the same tokens as 250).
  # Rules written before the run: more than +0.3 over vocab 6000's two-seed mean 40.20 (val
  # sacreBLEU, beam 4, alpha 1.0, average of 5) earns a second seed (train.seed 1); it becomes
  # the default only if the two seeds' mean beats 40.20 and the README command stays under 57
  # minutes at the slowest speed seen.
  [p14_main_batch1024]="$BEB7515 --config.data.tokens_per_batch=1024
    --config.train.steps=6800 --config.train.warmup_steps=1600 --config.train.checkpoint_every=200
    --config.train.keep_checkpoints=10 --config.train.eval_every=500"
  # Result: val sacreBLEU 40.31 (lc Moses 40.48, BP 0.944), val PPL 5.39 (vocab 6000's two seeds
  # 5.54 / 5.50; ahead at every evaluation at equal tokens): +0.11 over 40.20, not more than
  # 0.3, so no second seed and the default keeps 2048-token batches. Alpha 1.4: 40.37; 2.0: 32.18.
  # p14x2 (session 18) is not a candidate: it asks how much val BLEU more compute buys at this
  # recipe, i.e. what a faster step could be worth. It is p14 continued to twice its tokens
  # (13,600 steps, 27.6 epochs): started from a copy of p14's workdir without its final model
  #   cp -r ROOT/p14_main_batch1024 ROOT/p14x2_main_batch1024
  #   rm -r ROOT/p14x2_main_batch1024/{final.json,final_params,eval_val_*}
  # so its first 6,800 steps are p14's. Eq. 3 ignores train.steps, so the average of the 5
  # checkpoints up to S (`transformer-jax average --last=5 --step=S`) is the final model of an
  # S-step run; 36 kept checkpoints (every 200 steps) cover S = 8400, 10200, 12000, 13600 (1.24x,
  # 1.5x, 1.76x, 2x p14's compute), each scored on val (beam 4, alpha 1.0).
  [p14x2_main_batch1024]="$BEB7515 --config.data.tokens_per_batch=1024
    --config.train.steps=13600 --config.train.warmup_steps=1600 --config.train.checkpoint_every=200
    --config.train.keep_checkpoints=36 --config.train.eval_every=500"
  # Result (val sacreBLEU of the average of 5 up to S, alpha 1.0; averaged val PPL):
  # S = 6800 (p14) 40.31 (5.39), 8400 39.79 (5.37), 10200 40.16 (5.35), 12000 40.16 (5.45),
  # 13600 39.92 (5.56). Single-checkpoint val PPL is lowest at 8000-9000 (5.75) and rises to
  # 5.98 by 13600 (train NLL 0.81): at P_drop 0.1 and eps_ls 0.2 more steps buy no val BLEU,
  # so a faster step alone would not raise the main job; the recipe is at its ceiling here.
  # p15 and p16 (session 18), each the default at beb7515 with one change, rules written
  # before either ran: more than +0.3 over vocab 6000's two-seed mean 40.20 (val sacreBLEU,
  # beam 4, alpha 1.0, average of 5) earns a second seed; the change becomes the default only if
  # its two seeds' mean beats 40.20 and the README command stays under 57 minutes at the slowest
  # speed seen.
  # p15: 512-token batches, on p14's trend (1024 tokens: val PPL 5.39 against 5.54 / 5.50,
  # BLEU level); Eq. 3 stretched again (13,600 steps, warmup 3200, lr_scale 0.7: at every token
  # count the rate is half the 2048-token run's), checkpoints every 400 steps, the last 5
  # averaged (the same token span), val PPL every 1000 steps. 69 batch shapes against 38.
  [p15_main_batch512]="$BEB7515 --config.data.tokens_per_batch=512
    --config.train.steps=13600 --config.train.warmup_steps=3200 --config.train.checkpoint_every=400
    --config.train.eval_every=1000"
  # p16: h = 8 heads of d_k = d_v = 32 instead of 4 of 64 (the same parameters and matmul work;
  # the paper's Table 3 rows A put 8 heads 0.3 BLEU above 4 on newstest2013).
  [p16_main_h8]="$BEB7515 --config.model.h=8
    --config.model.d_k=32 --config.model.d_v=32"
  # p15 result: val sacreBLEU 40.14 (lc Moses 40.28, BP 0.949), val PPL 5.59: -0.06 against
  # 40.20, rejected; its val PPL led p12's at equal tokens up to about 1,500 steps' worth and
  # fell behind p14's after that.
  # p16 result: val sacreBLEU 39.56 (lc Moses 39.69, BP 0.941), val PPL 5.63: -0.64 against
  # 40.20, rejected; its val PPL tracked p12's two seeds at every evaluation (6.07 at 3400
  # against 6.00 / 5.95), and its step is about 7% slower than 4 heads' on this CPU.
  # p17 (session 18), not a candidate: p14x2 showed that at P_drop 0.1 twice the compute buys
  # no val BLEU; p17 asks whether more dropout with more compute raises that ceiling, i.e.
  # whether a step twice as fast could reach the issue's target. The default at beb7515 with
  # P_drop 0.2, run to twice its tokens (6800 steps of 2048 tokens), 40 checkpoints kept (every
  # 100 steps), so the average of 5 up to S is scored on val (beam 4, alpha 1.0) for S = 3400,
  # 4200, 5100, 6000, 6800. Reading fixed before it runs: above 41.0 at some S (+0.8 over
  # 40.20), a 2x faster step with P_drop 0.2 is a way to the target and the step's speed is
  # the next work; at or below 40.5 everywhere, more dropout with twice the compute does not
  # lift the ceiling either.
  [p17_main_drop02_x2]="--config.model.p_drop=0.2 --config.decode.alpha=1.0
    --config.train.eps_ls=0.2 --config.data.vocab_size=6000 --config.train.steps=6800
    --config.train.keep_checkpoints=40 --config.train.eval_every=500"
  # p17 result (val sacreBLEU of the average of 5 up to S, beam 4, alpha 1.0; averaged val PPL):
  # S = 3400 39.06 (5.82), 4200 39.30 (5.43), 5100 40.41 (5.19), 6000 40.08 (5.03), 6800 40.72
  # (4.97; lc Moses 40.91, BP 0.961). Between the two readings fixed beforehand: above 40.5 but
  # not above 41.0. Unlike P_drop 0.1 (p14x2), val PPL still falls at 2x and BLEU rises with it,
  # +0.52 over 40.20 from one seed; so more dropout does lift the ceiling with more compute, by
  # less than the target needs at 2x.
  # p18 (session 19): BPE-dropout (data.bpe_dropout, Provilkov et al. 2020) at p = 0.1 on both
  # sides, the default at beb7515 otherwise: the same 3400 steps of 2048-token batches (the
  # same target positions, so about the same time; sampled sentences are ~40% longer, so that
  # is about 9.5 epochs of sentences instead of 13.8), dev and test with deterministic BPE. A
  # regularizer of the data instead of the activations, the kind the literature finds worth
  # 1-2 BLEU on small corpora; p17 says more regularization needs more compute, so it may
  # fall short within the hour. Rule fixed before it runs, as for p15/p16: more than +0.3 over
  # 40.20 (val sacreBLEU, beam 4, alpha 1.0, average of 5) earns a second seed; the default
  # only if its two seeds' mean beats 40.20 and the README command stays under 57 minutes at
  # the slowest speed seen. 10 checkpoints kept, so that a continuation (as p14x2/p17) can be
  # scored as prefixes if 3400 steps look short of its ceiling.
  [p18_main_bpedrop01]="$BEB7515 --config.data.bpe_dropout=0.1
    --config.train.keep_checkpoints=10"
  # p18 result: val sacreBLEU 26.29 (lc Moses 26.36, BP 0.856), averaged val PPL 12.15 on the
  # deterministic segmentation (p12: 5.54): -13.9 against 40.20, rejected. 358 batches an epoch
  # instead of 247, so 9.5 epochs; its translations are fluent but drop and invent content, and
  # are short. Within the hour BPE-dropout on both sides leaves the model far from converged.
  # p18 ran SentencePiece's own sampler (encode(enable_sampling=True, alpha=0.1)), which is not
  # the paper's algorithm: it drops a skipped merge for good (src/bpe_model.cc), where
  # Provilkov et al.'s Algorithm 1 leaves it out for one step; on Multi30k train that made
  # sentences 39% longer instead of 21%. (Nor can its sampler be seeded across processes.)
  # p19 (SentencePiece's sampler on the source side only) was stopped at step 50, 3 minutes in,
  # when the switch moved to the paper's algorithm (Tokenizer.sample_batch); not run.
  # p20 (session 19): the paper's BPE-dropout, p = 0.1 on both sides, otherwise as p18: 3400
  # steps of 2048-token batches (300 batches an epoch instead of 247: about 11.3 epochs). Same
  # rule as p18.
  [p20_main_bpedrop01_paper]="$BEB7515 --config.data.bpe_dropout=0.1
    --config.train.keep_checkpoints=10"
  # p20 result: val sacreBLEU 34.93 (lc Moses 35.03, BP 0.900; alpha 1.4: 34.97), averaged val
  # PPL 7.42 (p12: 5.54): -5.27 against 40.20, rejected. 11.3 epochs of 300 batches. The
  # paper's algorithm is far milder than SentencePiece's sampler (p18: 26.29), but within the
  # hour BPE-dropout on both sides still costs more than it gives.
  # p21 (session 19, declared while p20 ran, before its result): the paper's BPE-dropout 0.1 on
  # the source side only: the encoder sees re-segmented input (18.8 pieces per sentence instead
  # of 15.7), the decoder learns the deterministic target, so an epoch keeps about its batches
  # (248: 13.7 epochs in 3400 steps) and the output distribution is not spread over
  # segmentations; the encoder's work grows by about a fifth. Same rule as p18.
  [p21_main_bpedrop01_src]="$BEB7515 --config.data.bpe_dropout=0.1
    --config.data.bpe_dropout_sides=src --config.train.keep_checkpoints=10"
  # p21 result: val sacreBLEU 38.09 (lc Moses 38.22, BP 0.903; alpha 1.4: 38.66), averaged val
  # PPL 5.77 (p12: 5.54 / 5.50): -2.11 against 40.20, rejected; its val PPL trailed p12's at
  # every evaluation (9.78 against 8.90 at step 1500).
  # p22 (session 20): lr_scale 0.5 at beb7515's recipe (peak 0.5 x 256^-0.5 x 800^-0.5 = 1.1e-3
  # instead of 1.55e-3; the whole Eq. 3 curve scaled by 5/7). The one direction of the rate
  # not yet tried: raising it to 1.0 was worse at every evaluation from step 1500 (p7 against
  # the baseline, val PPL 7.72 against 6.72, P_drop 0.3; p5 at P_drop 0.2), so the optimum may
  # lie below 0.7. Same step count and time as the default. Rule fixed before it runs, as for
  # p15/p16/p18: more than +0.3 over 40.20 (val sacreBLEU, beam 4, alpha 1.0, average of 5)
  # earns a second seed; the default only if its two seeds' mean beats 40.20. 10 checkpoints
  # kept, to score wider averages if its curve is still falling at the end.
  [p22_main_lr05]="$BEB7515 --config.train.lr_scale=0.5 --config.train.keep_checkpoints=10"
  # p22 result: val sacreBLEU 38.98 (lc Moses 39.12, BP 0.935), averaged val PPL 5.77 (p12:
  # 5.54 / 5.50): -1.22 against 40.20, rejected. Its val PPL trailed p12's at every evaluation,
  # by less as it went (50.9 against 44.5 / 44.1 at step 500, 6.83 against 6.69 / 6.57 at 2500).
  # With p7 (1.0 worse than 0.7), the rate's scale is at its best near 0.7.
  # p23 (session 20, declared after p22's result): warmup 400 at beb7515's recipe. Eq. 3 after
  # warmup is lr_scale x d_model^-0.5 x step^-0.5 whatever the warmup, so this keeps the
  # default's rate from step 800 on and changes only the first 800 steps: the peak is 2.2e-3 at
  # step 400 instead of 1.55e-3 at 800. p22 learned slower early and ended lower; this asks the
  # opposite: whether a faster start leaves a better model at step 3400. Same rule as p22.
  [p23_main_warmup400]="$BEB7515 --config.train.warmup_steps=400 --config.train.keep_checkpoints=10"
  # p23 result: val sacreBLEU 38.29 (lc Moses 38.40, BP 0.943; alpha 1.4: 38.68), averaged val
  # PPL 6.03 (p12: 5.54 / 5.50): -1.91 against 40.20, rejected. It led p12 up to step 1000
  # (val PPL 35.4 against 44.5 / 44.1 at step 500) and trailed from step 1250 on (9.75 against
  # 8.90 / 8.76 at 1500, 6.49 against 6.00 / 5.95 at 3400, last checkpoints): the higher early
  # peak leaves a worse model, as p5's did. Eq. 3 at lr_scale 0.7, warmup 800 is the best of
  # the rates tried on both of its knobs.
  # p24 and p25 (session 21): a cheaper step, spent on more steps. p14x2 and p17 say the recipe
  # is compute-limited only with more regularisation; the one lever left within the hour is a
  # model whose step costs less. N 2+2 instead of 3+3 (d_model 256, d_ff 1024, h 4 kept): its
  # fixed-shape step is 0.72x the default's (benchmarks/train_step.py, small6k_n2 against
  # small6k alternated, 540-547 ms against 724-767 ms on this VM), so 4700 steps (19.0
  # epochs) take the default's 3400 steps' time; warmup 800 and lr_scale 0.7 kept (Eq. 3 does
  # not depend on N). p24 keeps P_drop 0.1; p25 is p24 with P_drop 0.2 (p17's lever: 0.2 beat
  # 0.1 only with about 1.5x the compute, and p24/p25 get 1.39x). Rule for each, fixed before
  # either ran: more than +0.3 over 40.20 (val sacreBLEU, beam 4, alpha 1.0, average of 5)
  # earns a second seed; the default changes only if its two seeds' mean beats 40.20 and the
  # README command then fits 57 minutes at the slowest speed seen. 10 checkpoints kept.
  [p24_main_n2]="$N2_4700"
  [p25_main_n2_drop02]="$N2_4700 --config.model.p_drop=0.2"
  # p24 result: val sacreBLEU 39.41 (lc Moses 39.53, BP 0.940), averaged val PPL 5.73 (p12:
  # 5.54 / 5.50): -0.79 against 40.20, rejected. N 2+2 learns faster per step at first (val PPL
  # 35.4 against 44.5 / 44.1 at step 500, 9.45 against 10.9 / 10.6 at 1250), is level by step
  # 2500 and then flattens near 6.0-6.1 from step 4000 (p12's last checkpoints 6.00 / 5.95 at
  # 3400): the shallower model overfits sooner at P_drop 0.1. Loop 2,416 s (3,807 target
  # tokens/s), the default's time.
  # p25's second seed (train.seed 1, the same batches), run only if p25 passes the rule above.
  [p25_main_n2_drop02_seed1]="$N2_4700 --config.model.p_drop=0.2 --config.train.seed=1"
  # p25 result: val sacreBLEU 39.76 (lc Moses 39.84, BP 0.932; alpha 1.4: 40.06), averaged val
  # PPL 5.14, the lowest of any run within the hour (p12: 5.54 / 5.50; p24: 5.73): -0.44
  # against 40.20, rejected, so its second seed does not run. Its val PPL passed p12's from
  # step 2750 on (6.24 against 6.36 / 6.34; 5.80 against 6.04 / 6.04 at 3250) and still fell
  # at the end, but its output is shorter (BP 0.932 against 0.944 / 0.942): the better fit
  # does not reach the 1-best translations. Loop 2,382 s.
  # p26 (session 21, declared after p24's and p25's results): depth at the default's cost.
  # p24 says N 3 -> 2 costs BLEU at P_drop 0.1; p26 asks whether one more layer pays when the
  # FFN is narrowed to keep the step's FLOPs: N 4+4 with d_ff 512 (6.78M matmul MACs per
  # source+target token pair against the default's 7.04M, by train_step.py's model_flops
  # formula), 3400 steps, P_drop 0.1, the rest beb7515's. Same rule as p24; its loop time
  # is recorded against p12's.
  [p26_main_n4_ff512]="$BEB7515 --config.model.n_layers=4 --config.model.d_ff=512
    --config.train.keep_checkpoints=10"
  # p26 result: val sacreBLEU 38.33 (lc Moses 38.39, BP 0.933), averaged val PPL 6.45: -1.87
  # against 40.20, rejected. The deeper, narrower model learns slower at Eq. 3's rate and never
  # catches up (val PPL 66.8 against 44.5 / 44.1 at step 500, 12.5 against 8.90 / 8.76 at 1500,
  # 6.96 against 6.00 / 5.95 at 3400, last checkpoints). Loop 2,914 s, not a speed figure: a
  # fresh-clone .ci/run shared the cores for about 13 of its minutes.
  # p27 (session 22, declared after p26's result): the other side of p26, shallower and wider
  # at the default's cost. N 2+2 with d_ff 2048 (7.30M matmul MACs per source+target token
  # pair against the default's 7.04M by the same formula, 1.04x; two layers' attention scores
  # instead of three), 3400 steps, P_drop 0.1, the rest beb7515's, 10 checkpoints kept. Same
  # rule as p24 (more than +0.3 over 40.20 earns a second seed); its loop time is recorded
  # against p12's.
  [p27_main_n2_ff2048]="$N2_FF2048"
  # p27's second seed (train.seed 1, the same batches), run only if p27 passes the rule above.
  [p27_main_n2_ff2048_seed1]="$N2_FF2048 --config.train.seed=1"
  # p27 result: val sacreBLEU 38.91 (lc Moses 39.07, BP 0.949), averaged val PPL 5.59 (p12:
  # 5.54 / 5.50): -1.29 against 40.20, rejected, so its second seed does not run. Like p24 it
  # learns faster per step at first (val PPL 33.1 against 44.5 / 44.1 at step 500, 7.76
  # against 8.90 / 8.76 at 1500), then flattens from step 2750 (6.24, 6.22, 6.01, 6.04 at
  # 3400 against p12's 6.00 / 5.95) while its train loss keeps falling. Loop 2,395 s.
  # p28 (session 22, declared after p27's result): P_drop 0.15 at beb7515's recipe, between
  # the default's 0.1 (val 40.20, two seeds) and 0.2 (p17's average of 5 at step 3400: 39.06,
  # one seed), 3400 steps, 10 checkpoints kept. Same rule as p24.
  [p28_main_drop015]="$DROP015"
  # p28 result: val sacreBLEU 39.42 (lc Moses 39.52, BP 0.940), averaged val PPL 5.56 (p12:
  # 5.54 / 5.50): -0.78 against 40.20, rejected, so its second seed does not run. Slower than
  # P_drop 0.1 to step 2000 (val PPL 49.0 against 44.5 / 44.1 at step 500, 9.58 against 8.90 /
  # 8.76 at 1500), level from 2500 and a little lower at the end (5.91 against 6.00 / 5.95 at
  # 3400), with shorter output. Loop 2,352 s.
  # p28's second seed, run only if p28 passes p24's rule.
  [p28_main_drop015_seed1]="$DROP015 --config.train.seed=1"
  # p29 (session 22, declared before p28's result; runs after p28 unless p28 earns its second
  # seed): eps_ls 0.3 at beb7515's recipe. eps_ls 0.1 -> 0.2 gained 0.10 over two seeds each
  # (p9 / p11); 0.3 asks whether more smoothing goes on paying. 3400 steps, 10 checkpoints
  # kept, same rule as p24.
  [p29_main_ls03]="$BEB7515 --config.train.eps_ls=0.3 --config.train.keep_checkpoints=10"
  # p29 result: val sacreBLEU 40.17 (lc Moses 40.31, BP 0.948), averaged val PPL 6.03 (not
  # comparable: more smoothing raises the NLL): -0.03 against 40.20, inside the default's seed
  # spread (40.43 / 39.96) and not more than +0.3: rejected, no second seed. Loop 2,387 s.
  # p30 (session 23, declared after p29's result): dropout on the attention weights, 0.1, at
  # beb7515's recipe (model.p_drop_attn; not in the paper, which drops only sub-layer outputs
  # and embedding sums; tensor2tensor's later base configs and fairseq offer it). No axis of
  # residual dropout or smoothing beat the default by more than 0.3; p30 asks whether
  # regularising the attention distributions does, at 3400 steps. The CPU path is einsum with or
  # without it; the extra masks' cost is read from the loop time against p12's. Same rule as
  # p24 (more than +0.3 over 40.20 earns a second seed), 10 checkpoints kept.
  [p30_main_attdrop01]="$ATTDROP01"
  # p30's second seed, run only if p30 passes p24's rule.
  [p30_main_attdrop01_seed1]="$ATTDROP01 --config.train.seed=1"
  # p30 result: val sacreBLEU 40.32 (lc Moses 40.41, BP 0.935; alpha 1.4: 40.43; 1.7: 38.27,
  # repetition), averaged val PPL 5.43 (p12: 5.54 / 5.50): +0.12 over 40.20, not more than
  # 0.3: rejected, its second seed does not run. Val PPL level with p12's throughout (14.46
  # against 14.9 / 14.3 at step 1000, 7.29 against 7.34 / 7.27 at 2000), the output shorter
  # again. Loop 2,701 s, 1.14x the ~2,370 s of p24-p29 on this VM: the extra masks also cost
  # time the hour does not have.
  # p31 and p32 (session 23, declared after p30's result): the untried side of each of Eq. 3's
  # two knobs at beb7515's recipe. p22 (lr_scale 0.5) and p23 (warmup 400, a higher peak) were
  # both worse; p7 (lr_scale 1.0) was at the old P_drop 0.3. p31 raises the whole curve to
  # lr_scale 0.85 (peak 1.88e-3 at step 800, against 1.55e-3); p32 lowers only the early part,
  # warmup 1200 (peak 1.26e-3 at step 1200; from there the default's rate). 3400 steps, 10
  # checkpoints kept, same rule as p24; p32 runs after p31 whatever p31 scores.
  [p31_main_lr085]="$BEB7515 --config.train.lr_scale=0.85 --config.train.keep_checkpoints=10"
  [p32_main_warmup1200]="$BEB7515 --config.train.warmup_steps=1200
    --config.train.keep_checkpoints=10"
  # p31 result: val sacreBLEU 39.84 (lc Moses 39.96, BP 0.926), averaged val PPL 5.37, the
  # lowest of any N 3+3 run at 3400 steps (p12: 5.54 / 5.50): -0.36 against 40.20, rejected.
  # Ahead of p12 on val PPL early (42.2 against 44.5 / 44.1 at step 500), level from 1000, a
  # little lower at the end (5.89 against 6.00 / 5.95 at 3400), with shorter output: p25's and
  # p30's pattern again. Loop 2,956 s, not a speed figure (word-reward decodes and tests shared
  # the cores for about 20 of its minutes).
  # p32 result: val sacreBLEU 39.59 (lc Moses 39.72, BP 0.934), averaged val PPL 5.51: -0.61
  # against 40.20, rejected. Behind p12 on val PPL until the end (60.5 against 44.5 / 44.1 at
  # step 500, 9.86 against 8.90 / 8.76 at 1500, 5.99 against 6.00 / 5.95 at 3400). Loop 2,543 s.
  # p33 (session 24, declared after p32's result), not a candidate: a budget probe, as p17.
  # Nothing inside the hour has beaten the default by more than 0.3; the issue's owner needs to
  # know whether a longer budget would reach the target. p17 (P_drop 0.2, 2x) showed more
  # regularisation pays with more compute; p33 takes the literature's P_drop 0.3 (Wu et al.'s
  # Tiny) at beb7515's recipe otherwise, run to 9000 steps of 2048 tokens (36.4 epochs, 2.65x
  # the default's compute; about two hours here), 62 checkpoints kept (every 100 steps) so that
  # the average of 5 up to S is scored on val (beam 4, alpha 1.0) for S = 3400, 5100, 6800,
  # 9000. Reading fixed before it runs: lc Moses val at or above 42.7 at some S (what test2016's
  # 41.0 would need: test2016 has scored 1.1-1.6 below val) says the target is within reach at
  # about S / 3400 hours on this CPU; at or below p17's 40.91 everywhere, P_drop 0.3 does not
  # lift the ceiling at up to 2.65x either.
  [p33_main_drop03_x265]="$BEB7515 --config.model.p_drop=0.3 --config.train.steps=9000
    --config.train.keep_checkpoints=62 --config.train.eval_every=500"
  # p33 result (val sacreBLEU / lc Moses of the average of 5 up to S, beam 4, alpha 1.0;
  # averaged val PPL): S = 3400 35.47 / 35.61 (7.11), 5100 37.80 / 37.92 (5.90), 6800 38.72 /
  # 38.85 (5.41), 9000 39.34 / 39.44 (5.09, BP 0.949). Below p17's 40.91 everywhere: by the
  # reading fixed above, P_drop 0.3 does not lift the ceiling at up to 2.65x the compute; at
  # 9000 steps it is still 0.86 under the default's two-seed mean at 1x. Loop 6,467 s.
  # p34 (session 25, declared after p33's result): the vocabulary's model, the one vocabulary
  # axis left (sizes 4000, 6000 and 8000 ran as p13, p12 and p11; BPE-dropout as p18-p21).
  # SentencePiece's unigram language model (Kudo 2018; data.vocab_model, new this session)
  # instead of BPE, 6000 pieces, at beb7515's recipe otherwise. On Multi30k train it gives 2%
  # more pieces per sentence (EN 14.99 / DE 15.78 against 14.70 / 15.42), so 3400 steps are
  # about 2% fewer epochs. 10 checkpoints kept; same rule as p24: more than +0.3 over the
  # default's two-seed mean 40.20 earns a second seed, which must hold the mean above 40.20.
  [p34_main_unigram]="$BEB7515 --config.data.vocab_model=unigram
    --config.train.keep_checkpoints=10"
  [p34_main_unigram_seed1]="$BEB7515 --config.data.vocab_model=unigram
    --config.train.keep_checkpoints=10 --config.train.seed=1"
  # p34 result: val sacreBLEU 39.27 (lc Moses 39.43, BP 0.928; alpha 1.4: 39.24, BP 0.949),
  # averaged val PPL 5.34 per unigram piece: -0.93 against 40.20, rejected; its second seed
  # does not run. Val NLL per sentence (results.md) ahead of p12's to step 1000 (44.57 against
  # 45.77 / 45.05 nats), level to 2750, behind from 3000 (30.79 against 30.34 / 30.19 at 3400;
  # the averaged model about 29.3 against 29.0 / 28.9), in 13.4 epochs against 13.8, and its
  # output is shorter. Loop 2,473 s (p24-p29's ~2,370 s; 2% more pieces per sentence).
  # p35 (session 25, declared after p34's result): h = 2 heads of d_k = d_v = 128 at beb7515's
  # recipe, the untried side of the head count (p16's 8 heads of 32 scored -0.64; Table 3 (A)
  # found 1 head 0.9 BLEU worse than 8 at d_model 512, and 16-32 worse too). Same matmul FLOPs
  # as the default; fewer, wider score matrices. 10 checkpoints kept; same rule as p24.
  [p35_main_h2]="$BEB7515 --config.model.h=2 --config.model.d_k=128 --config.model.d_v=128
    --config.train.keep_checkpoints=10"
  [p35_main_h2_seed1]="$BEB7515 --config.model.h=2 --config.model.d_k=128 --config.model.d_v=128
    --config.train.keep_checkpoints=10 --config.train.seed=1"
  # p35 result: val sacreBLEU 39.05 (lc Moses 39.12, BP 0.939), averaged val PPL 5.62 (p12:
  # 5.54 / 5.50): -1.15 against 40.20, rejected; its second seed does not run. Val PPL level
  # with p12's to step 2000, behind from 2750 (6.53 against 6.36 / 6.34; 6.14 against 6.00 /
  # 5.95 at 3400). With 8 heads -0.64 (p16) and 2 heads -1.15, the default's 4 stay.
  # p36 (session 25, declared after p35's result): a 7000-piece BPE vocabulary at beb7515's
  # recipe, the untried size between the best, 6000 (p12: 40.20 over two seeds), and 8000 (p11:
  # 39.94; 4000, p13: 38.67). Same rule as p24; 10 checkpoints kept.
  [p36_main_vocab7k]="$BEB7515 --config.data.vocab_size=7000 --config.train.keep_checkpoints=10"
  [p36_main_vocab7k_seed1]="$BEB7515 --config.data.vocab_size=7000
    --config.train.keep_checkpoints=10 --config.train.seed=1"
  # p36 result: val sacreBLEU 39.78 (lc Moses 39.91, BP 0.940), averaged val PPL 5.78: -0.42
  # against 40.20, rejected. Loop 3,114 s (the test suite ran beside it for 17 minutes).
  # p37 (session 26): not a candidate for the hour but the question every reading above leaves
  # open: does this code reach the literature's figure with the literature's recipe and budget,
  # time aside? Wu et al. 2021's Transformer-Tiny as their README-baseline.md trains it
  # (LividWo/Revisit-MMT: fairseq, 2 GPUs x --max-tokens 4096, so 8192 padded target positions
  # per update; --lr 0.005 after --warmup-updates 2000 with inverse_sqrt, which is Eq. 3 at
  # d_model 128 with lr_scale 0.005 x 128^0.5 x 2000^0.5 = 2.53; --max-update 8000; dropout 0.3;
  # the last 10 epoch checkpoints averaged: an epoch is about 62 updates here; beam 5) with the
  # paper's Adam betas and eps_ls 0.1, a 10000-piece BPE vocabulary for their 10k merges, alpha
  # 1.0 for fairseq's length normalisation, on our cased text (theirs was lowercased).
  # Reading, fixed before it runs: the default's val-to-test2016 gap (lc 40.62 -> 38.96) puts
  # test2016's 41.0 at about 42.7 lc Moses on val. At or above that, the target is a matter of
  # compute (about 2x the hour here), and the hour's recipe search should move to this model;
  # below 40.6 (the default's), the literature's figure rests on something this pipeline does
  # not have (lowercased training text) more than on compute.
  # Restarted at step 650 with grad_accum_steps=4 (the same update, summed over four micro-
  # batches of about 2048 positions): one 8192-position batch ran 1.65 s a step (about 4,400
  # target tokens/s; its logits alone are 8192 x 10000 floats), so the 8000 steps would take
  # 3.7 hours here; with four micro-batches it ran 1.1 s a step (benchmarks/RESULTS.md, fixed
  # shape 128 x 64: 0.66x the step of one piece).
  [p37_tiny_literature]="$tiny --config.data.vocab_size=10000 --config.data.tokens_per_batch=8192
    --config.train.grad_accum_steps=4
    --config.train.steps=8000 --config.train.warmup_steps=2000 --config.train.lr_scale=2.53
    --config.train.checkpoint_every=62 --config.train.keep_checkpoints=10
    --config.train.average_last=10 --config.train.eval_every=500 --config.decode.beam_size=5
    --config.decode.alpha=1.0"
  # p37 result (sessions 26-27; resumed at step 6758 in session 27): the last-10 average up
  # to S, val sacreBLEU / lc Moses: S 2790 (the default's training time) 38.61 / 38.71; 4030:
  # 40.50 / 40.62; 5580 (1.9x): 40.70 / 40.86; 6696 (2.4x): 41.19 / 41.36; 8000 (2.9x, the
  # run's own final evaluation): 41.68 / 41.84, BP 0.968. (Session 28: by step times measured
  # side by side these S are 1.38x, 1.99x, 2.75x, 3.30x and 3.95x the default's compute.) Between the two readings: the
  # literature's recipe and budget end 0.9 short of the target's val level (42.7 lc).
  # p38 (session 27): the one difference between Wu et al.'s recipe and p37 left untested,
  # their lowercased text, on the hour's recipe: beb7515's default with data.lowercase=True
  # (new: training and dev pairs, vocabulary and val sources lowercased; one seed). Compared on
  # val lc Moses BLEU (its cased sacreBLEU has no capitals: not a candidate, the issue's model
  # stays cased) with the default's two seeds, p12: 40.62 / 40.08, mean 40.35. Reading, fixed
  # before it runs: a gain of 1.0 or more (about twice p12's seed spread) says lowercased
  # training text carries that much of the gap to the literature's figure, which a cased
  # model cannot have; under 0.5, none that one seed can see.
  [p38_main_lowercase]="$BEB7515 --config.data.lowercase=True --config.train.keep_checkpoints=10"
  # p38 result: val lc Moses BLEU 39.97 (BP 0.951; cased sacreBLEU 8.47, no capitals), -0.38
  # against 40.35: under 0.5, so lowercased text is not the literature's missing part. Val NLL
  # per sentence at 3400: 29.36 nats (lowercased reference) against p12's 30.34 / 30.19.
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${!CANDIDATES[@]}")
for name in "${names[@]}"; do
  dir="$root/$name"
  if [ -f "$dir/final.json" ]; then echo "$name: done"; continue; fi
  start=$(date +%s)
  # shellcheck disable=SC2086  # the overrides are words
  # Shared settings first; a candidate's own overrides come after them and win. They start
  # from the baseline, the main job as of d38a3aa (P_drop 0.3, lr_scale 0.7, 3400 steps,
  # beam 4 / alpha 0.6), so each candidate stays what it ran as after configs/multi30k.py moved
  # on (p8 made P_drop 0.2 and alpha 1.0 the default, c72eb28 eps_ls 0.2).
  transformer-jax train --config=configs/multi30k.py --workdir="$dir" \
    --config.model.p_drop=0.3 --config.train.lr_scale=0.7 --config.train.steps=3400 \
    --config.train.eps_ls=0.1 --config.data.vocab_size=8000 \
    --config.decode.beam_size=4 --config.decode.alpha=0.6 \
    --config.train.checkpoint_every=100 --config.train.keep_checkpoints=5 \
    --config.train.average_last=5 --config.train.eval_every=250 \
    "--config.train.final_eval_splits=('val',)" ${CANDIDATES[$name]}
  echo "$name: wall_seconds=$(( $(date +%s) - start ))" | tee -a "$root/wall.log"
done
python "$(dirname "$0")/collect.py" "$root"
