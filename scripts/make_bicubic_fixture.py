"""Reference for eesmm's relative-position-bias table resize: SimMIM's bicubic rule,
torch.nn.functional.interpolate(mode="bicubic", align_corners=False) on each head's
(2w-1)x(2w-1) table. Writes tests/data/relpos_table_w4_bicubic_w{7,2}.npy (run from the repository root after
make_relpos_fixture.py)."""
import numpy as np
import torch
import torch.nn.functional as F

table = torch.from_numpy(np.load("tests/data/relpos_table_w4.npy"))  # [49, heads]
rows, heads = table.shape
side = int(rows ** 0.5)
for window in (7, 2):
    new = 2 * window - 1
    img = table.permute(1, 0).reshape(1, heads, side, side)
    out = F.interpolate(img, size=(new, new), mode="bicubic", align_corners=False)
    out = out.reshape(heads, new * new).permute(1, 0).contiguous()
    np.save(f"tests/data/relpos_table_w4_bicubic_w{window}.npy", out.numpy().astype("<f4"))
    print(window, out.shape)
