"""Level 0's JPEG tiles of a tiled (Big)TIFF slide as complete streams, made as flashslide
does (SOI, Adobe APP14 transform 1, the JPEGTables, the tile without its SOI), packed for
bench/nvjpeg_decode.cu: u32 count, tile width, tile height, then (u32 length, bytes) a tile.

Usage: python3 bench/jpeg_tiles.py SLIDE.svs tiles.bin"""
import struct, sys
path, out = sys.argv[1], sys.argv[2]
f = open(path, 'rb'); b = f.read(16)
le = b[:2] == b'II'; e = '<' if le else '>'
big = struct.unpack(e + 'H', b[2:4])[0] == 43
off = struct.unpack(e + 'Q', b[8:16])[0] if big else struct.unpack(e + 'I', b[4:8])[0]
f.seek(off)
n = struct.unpack(e + ('Q' if big else 'H'), f.read(8 if big else 2))[0]
sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 16: 8}
fmt = {1: 'B', 2: 'B', 3: 'H', 4: 'I', 5: 'II', 7: 'B', 16: 'Q'}
tags = {}
for i in range(n):
    ent = f.read(20 if big else 12)
    tag, typ = struct.unpack(e + 'HH', ent[:4])
    cnt = struct.unpack(e + ('Q' if big else 'I'), ent[4:12] if big else ent[4:8])[0]
    valb = ent[12:20] if big else ent[8:12]
    nbytes = sizes[typ] * cnt
    if nbytes <= len(valb):
        raw = valb[:nbytes]
    else:
        p = struct.unpack(e + ('Q' if big else 'I'), valb)[0]
        pos = f.tell(); f.seek(p); raw = f.read(nbytes); f.seek(pos)
    tags[tag] = raw if typ in (2, 7) else struct.unpack(e + fmt[typ] * cnt, raw)
tw, th = tags[322][0], tags[323][0]
offs, cnts = tags[324], tags[325]
tables = tags.get(347)
tbl = b''
if tables:
    t = bytes(tables); tbl = t[2:-2] if t[-2:] == b'\xff\xd9' else t[2:]
app14 = bytes([0xFF,0xEE,0,14]) + b'Adobe' + bytes([0,0x64,0,0,0,0,1])
o = open(out, 'wb'); o.write(struct.pack('<III', len(offs), tw, th))
for p, c in zip(offs, cnts):
    f.seek(p); d = f.read(c)
    s = b'\xff\xd8' + app14 + tbl + d[2:]
    o.write(struct.pack('<I', len(s))); o.write(s)
print(len(offs), 'tiles', tw, th, 'tables', len(tbl))
