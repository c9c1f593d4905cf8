#!/usr/bin/python3
"""Converts a PyTorch .pth/.pt file into the safetensors file `segdist weights import` reads.

Needs only python3 and torch (Debian: apt-get install python3-torch); the safetensors file is written
by hand below, so the safetensors package is not required.

    python3 tools/pth_to_safetensors.py resnet50-0676ba61.pth resnet50.safetensors
    python3 tools/pth_to_safetensors.py train_epoch_50.pth pspnet50.safetensors      # semseg checkpoint
    python3 tools/pth_to_safetensors.py pspnet_r50.pth pspnet_r50.safetensors --key state_dict

Accepted inputs: a state_dict (a mapping of names to tensors), or a checkpoint dict holding one under
`state_dict` (mmseg, semseg), `model` (many training scripts) or the key given with --key. Keys are kept
as they are (a `module.` prefix included: segdist strips it on import); tensors keep their layout (OIHW
conv weights) and dtype (F32, F16, BF16, F64, I64 for BN's num_batches_tracked ...). Non-tensor
entries are skipped and listed. The file is loaded with torch.load(map_location="cpu"), which runs
pickle: only convert files you trust.
"""

import argparse
import json
import struct
import sys

import torch

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def find_state_dict(obj, key):
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            sys.exit(f"error: the file has no entry '{key}' (top-level keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})")
        return obj[key]
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for k in ("state_dict", "model"):
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
        return obj
    sys.exit(f"error: expected a state_dict or a checkpoint dict, got {type(obj).__name__}")


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: its bits are the upper half of a float32, read them as int16.
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, t in tensors:
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for c in chunks:
            f.write(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help=".pth / .pt file")
    ap.add_argument("output", help="safetensors file to write")
    ap.add_argument("--key", help="entry of the checkpoint dict that holds the state_dict (default: state_dict, then model, then the dict itself)")
    args = ap.parse_args()

    state = find_state_dict(torch.load(args.input, map_location="cpu"), args.key)
    tensors, skipped = [], []
    for name, value in state.items():
        if torch.is_tensor(value) and value.dtype in DTYPES:
            tensors.append((name, value))
        else:
            skipped.append(name)
    if not tensors:
        sys.exit(f"error: {args.input} holds no tensors")
    write_safetensors(args.output, tensors, {"source": str(args.input), "converted_by": "tools/pth_to_safetensors.py"})
    print(f"wrote {len(tensors)} tensors to {args.output}")
    if skipped:
        print(f"skipped {len(skipped)} entries that are not tensors: {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}")


if __name__ == "__main__":
    main()
