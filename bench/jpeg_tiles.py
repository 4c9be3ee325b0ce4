"""Level 0's JPEG tiles of a tiled (Big)TIFF slide as complete streams, made as flashslide
does (SOI, Adobe APP14 transform 1, the JPEGTables, the tile without its SOI), packed for
bench/nvjpeg_decode.cu: u32 count, tile width, tile height, then (u32 length, bytes) a tile.

Usage: python3 bench/jpeg_tiles.py SLIDE.svs tiles.bin

As a module: `level0_jpeg_tiles(path)` reads only the tile table (no tile data);
`tile_stream(f, table, i)` reads and completes stored tile i (row-major) from an open file.
"""
import struct
import sys

APP14 = bytes([0xFF, 0xEE, 0, 14]) + b'Adobe' + bytes([0, 0x64, 0, 0, 0, 0])


def level0_jpeg_tiles(path):
    """Level 0's tile table: dict(width, height, tile_w, tile_h, cols, rows, photometric,
    offsets, counts (row-major, a count of 0 is a tile the file leaves out), tables (the
    JPEGTables without their SOI/EOI))."""
    with open(path, 'rb') as f:
        b = f.read(16)
        e = '<' if b[:2] == b'II' else '>'
        big = struct.unpack(e + 'H', b[2:4])[0] == 43
        off = struct.unpack(e + 'Q', b[8:16])[0] if big else struct.unpack(e + 'I', b[4:8])[0]
        f.seek(off)
        n = struct.unpack(e + ('Q' if big else 'H'), f.read(8 if big else 2))[0]
        sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 16: 8}
        fmt = {1: 'B', 2: 'B', 3: 'H', 4: 'I', 5: 'II', 7: 'B', 16: 'Q'}
        tags = {}
        for _ in range(n):
            ent = f.read(20 if big else 12)
            tag, typ = struct.unpack(e + 'HH', ent[:4])
            if typ not in sizes:
                continue
            cnt = struct.unpack(e + ('Q' if big else 'I'), ent[4:12] if big else ent[4:8])[0]
            valb = ent[12:20] if big else ent[8:12]
            nbytes = sizes[typ] * cnt
            if nbytes <= len(valb):
                raw = valb[:nbytes]
            else:
                p = struct.unpack(e + ('Q' if big else 'I'), valb)[0]
                pos = f.tell(); f.seek(p); raw = f.read(nbytes); f.seek(pos)
            tags[tag] = raw if typ in (2, 7) else struct.unpack(e + fmt[typ] * cnt, raw)
    if tags.get(259, (1,))[0] != 7 or 324 not in tags:
        raise ValueError(f'{path}: level 0 is not stored as JPEG tiles')
    width, height, tw, th = tags[256][0], tags[257][0], tags[322][0], tags[323][0]
    tbl = b''
    if tags.get(347):
        t = bytes(tags[347]); tbl = t[2:-2] if t[-2:] == b'\xff\xd9' else t[2:]
    return dict(width=width, height=height, tile_w=tw, tile_h=th, cols=-(-width // tw),
                rows=-(-height // th), photometric=tags.get(262, (2,))[0], offsets=tags[324],
                counts=tags[325], tables=tbl)


def tile_stream(f, table, i, transform=1):
    """Stored tile i read from open file f as a complete JPEG stream (None if left out)."""
    if table['counts'][i] == 0:
        return None
    f.seek(table['offsets'][i]); d = f.read(table['counts'][i])
    return b'\xff\xd8' + APP14 + bytes([transform]) + table['tables'] + d[2:]


def main():
    path, out = sys.argv[1], sys.argv[2]
    table = level0_jpeg_tiles(path)
    offs = table['offsets']
    with open(path, 'rb') as f, open(out, 'wb') as o:
        o.write(struct.pack('<III', len(offs), table['tile_w'], table['tile_h']))
        for i in range(len(offs)):
            f.seek(offs[i]); d = f.read(table['counts'][i])
            s = b'\xff\xd8' + APP14 + bytes([1]) + table['tables'] + d[2:]
            o.write(struct.pack('<I', len(s))); o.write(s)
    print(len(offs), 'tiles', table['tile_w'], table['tile_h'], 'tables', len(table['tables']))


if __name__ == '__main__':
    main()
