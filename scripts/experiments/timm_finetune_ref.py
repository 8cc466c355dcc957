#!/usr/bin/env python3
# Usage: python scripts/experiments/timm_finetune_ref.py [aug|noaug]   (needs torch, torchvision, timm)
"""Independent reference: timm's SwinTransformer (swin-micro-28 config), the same fine-tuning
budget as runs/experiment/finetune-scratch (first 10k FMNIST train images, 1 epoch, batch 32,
AdamW lr 2.5e-3 peak, wd 0.05 with timm's no-decay groups, warm-up 31 steps + cosine to 1e-5*32/512,
label smoothing 0.1, drop path 0.1, layer decay 0.9, crop [0.6,1] + flip, clip 5), evaluated on the 10k test images."""
import gzip, math, sys, numpy as np, torch, timm, torch.nn.functional as F
import torchvision.transforms.v2 as T
torch.manual_seed(0); np.random.seed(0)
torch.set_num_threads(1)
root = '/usr/share/datasets/fashion-mnist'
def load(stem, off): return np.frombuffer(gzip.open(f'{root}/{stem}.gz').read()[off:], np.uint8)
xtr = load('train-images-idx3-ubyte', 16).reshape(-1, 1, 28, 28)[:10000]
ytr = load('train-labels-idx1-ubyte', 8)[:10000].astype(np.int64)
xte = load('t10k-images-idx3-ubyte', 16).reshape(-1, 1, 28, 28)
yte = load('t10k-labels-idx1-ubyte', 8).astype(np.int64)
mean, std = 0.2860, 0.3530
aug = sys.argv[1] == 'aug' if len(sys.argv) > 1 else True
model = timm.models.swin_transformer.SwinTransformer(img_size=28, patch_size=2, in_chans=1, embed_dim=48,
    depths=(2, 6), num_heads=(3, 6), window_size=7, num_classes=10, drop_path_rate=0.1)
depths = [2, 6]; top = sum(depths) + 1
def layer_id(n):
    p = n.split('.')
    if p[0] in ('patch_embed', 'absolute_pos_embed'): return 0
    if p[0] == 'layers':
        s = int(p[1]); before = sum(depths[:s])
        return before + int(p[3]) + 1 if p[2] == 'blocks' else before
    return top
groups = []
for n, prm in model.named_parameters():
    nd = prm.ndim <= 1 or n.endswith('.bias') or 'relative_position_bias_table' in n
    groups.append({'params': [prm], 'weight_decay': 0.0 if nd else 0.05, 'scale': 0.9 ** (top - layer_id(n))})
opt = torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.999), eps=1e-8)
batch, steps = 32, 10000 // 32
lr, warm, lo, wlo = 4e-2 * 32 / 512, round(0.1 * steps), 1e-5 * 32 / 512, 5e-7 * 32 / 512
crop = T.Compose([T.RandomResizedCrop(28, scale=(0.6, 1.0), antialias=True), T.RandomHorizontalFlip()])
order = np.random.permutation(10000)
model.train()
for step in range(steps):
    idx = order[step * batch:(step + 1) * batch]
    x = torch.from_numpy(xtr[idx].copy()).float() / 255
    if aug: x = torch.stack([crop(i) for i in x])
    x = (x - mean) / std
    y = torch.from_numpy(ytr[idx])
    cur = wlo + (lr - wlo) * step / warm if step < warm else lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * (step - warm) / (steps - warm)))
    for g in opt.param_groups: g['lr'] = cur * g['scale']
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0); opt.step()
    if step % 50 == 0: print(step, round(loss.item(), 3), flush=True)
model.eval(); correct = 0
with torch.no_grad():
    for i in range(0, 10000, 500):
        x = (torch.from_numpy(xte[i:i+500].copy()).float() / 255 - mean) / std
        correct += (model(x).argmax(1).numpy() == yte[i:i+500]).sum()
print('timm reference top-1', correct / 10000)
