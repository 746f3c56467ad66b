#!/usr/bin/env python3
"""Writes the malformed safetensors corpus (one file per rule of formats.md §2.3) and its
manifest, plus a few valid files used as extra fuzz seeds (fuzz/seeds/).

manifest.tsv columns: file, expected byte offset ("-" = none), expected tensor ("-" = none),
a substring the error message must contain. tests/safetensors_reader_test.cpp checks every row;
rerun this script after changing a message: python3 tests/data/malformed/generate.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "..", "..", "..", "fuzz", "seeds")


def st(header, data=b"", pad=0, n=None):
    """A safetensors file: 8-byte LE length, header bytes (+ pad spaces), data."""
    if isinstance(header, str):
        header = header.encode()
    header = header + b" " * pad
    if n is None:
        n = len(header)
    return struct.pack("<Q", n) + header + data


def ds(header, pad=0):
    """Absolute offset of data_offsets 0 for st(header, pad=pad)."""
    return 8 + len(header.encode() if isinstance(header, str) else header) + pad


def key_at(header, key):
    """Absolute offset of the opening quote of the LAST occurrence of key."""
    h = header.encode() if isinstance(header, str) else header
    return 8 + h.rindex(b'"' + key.encode() + b'"')


E = '"dtype":"F32","shape":[1],"data_offsets":[0,4]'
cases = []  # (name, bytes, offset, tensor, substring)


def add(name, data, offset, tensor, msg):
    cases.append((name, data, offset, tensor, msg))


add("short_file", b"\x01\x02\x03", 0, None, "shorter than the 8-byte header length field")
add("empty_file", b"", 0, None, "file is 0 bytes, shorter than")
add("header_len_past_end", struct.pack("<Q", 100) + b"{}", 0, None,
    "header length 100 runs past the end of the file (file size 10)")
add("header_len_over_limit", struct.pack("<Q", 100_000_001) + b"{}", 0, None,
    "exceeds the limit of 100000000 bytes")
add("header_len_huge", struct.pack("<Q", 2**64 - 1) + b"{}", 0, None, "exceeds the limit")
add("empty_header", st(""), 8, None, "header is empty")
hb = b'{"a\xff":{' + E.encode() + b'}}'
add("not_utf8", st(hb, b"\0" * 4), 8 + hb.index(b"\xff"), None, "header is not valid UTF-8")
hb = b'{"a":{' + E.encode() + b'},"b\xc0\x80":1}'
add("overlong_utf8", st(hb, b"\0" * 4), 8 + hb.index(b"\xc0"), None, "not valid UTF-8")
add("not_object", st("[1,2]"), 8, None, "header does not start with '{' (first byte 0x5b)")
add("leading_space", st(" {}"), 8, None, "does not start with '{'")
add("trailing_garbage", st("{} x"), 11, None, "unexpected bytes after the header's JSON object")
add("two_objects", st("{}{}"), 10, None, "unexpected bytes after the header's JSON object")
add("trailing_nul_padding", st("{}\0\0"), 10, None, "unexpected bytes after the header")
add("invalid_json", st('{"a":}'), 8, None, "header is not valid JSON")
add("unterminated_object", st('{"a":{' + E), 8, None,
    "header is not valid JSON: the top-level object is never closed")
add("bad_escape", st('{"a\\ud800":{' + E + '}}', b"\0" * 4), 8, None, "header is not valid JSON")
add("bigint_shape", st('{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}'),
    8, None, "header is not valid JSON")
h = '{"a":{' + E + '},"a":{' + E + '}}'
add("duplicate_tensor", st(h, b"\0" * 4), key_at(h, "a"), "a", "duplicate tensor name in header")
h = '{"__metadata__":{},"__metadata__":{},"a":{' + E + '}}'
add("duplicate_metadata", st(h, b"\0" * 4), key_at(h, "__metadata__"), None,
    'duplicate key "__metadata__" in header')
h = '{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
add("duplicate_key_in_entry", st(h, b"\0" * 4), 9, "a", 'duplicate key "dtype" inside the entry')
h = '{"__metadata__":{"format":"pt","format":"pt"},"a":{' + E + '}}'
add("duplicate_key_in_metadata", st(h, b"\0" * 4), 9, None, 'duplicate key "format" in __metadata__')
h = '{"__metadata__":"pt","a":{' + E + '}}'
add("metadata_not_object", st(h, b"\0" * 4), 9, None, "__metadata__ is not a JSON object")
h = '{"__metadata__":{"format":1},"a":{' + E + '}}'
add("metadata_number_value", st(h, b"\0" * 4), 9, None,
    '__metadata__ value of key "format" is not a string (1)')
h = '{"__metadata__":{"x":{"y":"z"}},"a":{' + E + '}}'
add("metadata_nested_object", st(h, b"\0" * 4), 9, None, '__metadata__ value of key "x" is not a string')
h = '{"a":[1]}'
add("entry_not_object", st(h), 9, "a", "tensor entry is not a JSON object")
h = '{"a":{"shape":[1],"data_offsets":[0,4]}}'
add("missing_dtype", st(h, b"\0" * 4), 9, "a", 'tensor entry has no "dtype"')
h = '{"a":{"dtype":"F32","data_offsets":[0,4]}}'
add("missing_shape", st(h, b"\0" * 4), 9, "a", 'tensor entry has no "shape"')
h = '{"a":{"dtype":"F32","shape":[1]}}'
add("missing_data_offsets", st(h, b"\0" * 4), 9, "a", 'tensor entry has no "data_offsets"')
h = '{"a":{"dtype":5,"shape":[1],"data_offsets":[0,4]}}'
add("dtype_not_string", st(h, b"\0" * 4), 9, "a", '"dtype" is not a string')
h = '{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}'
add("unknown_dtype", st(h, b"\0" * 4), 9, "a", 'unknown dtype "F12"')
h = '{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}'
add("lowercase_dtype", st(h, b"\0" * 4), 9, "a", 'unknown dtype "f32"')
h = '{"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}}'
add("shape_not_array", st(h, b"\0" * 4), 9, "a", '"shape" is not an array')
h = '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'
add("negative_shape", st(h, b"\0" * 4), 9, "a", "shape dimension is negative (-1)")
h = '{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}'
add("float_shape", st(h, b"\0" * 4), 9, "a", "shape dimension is not an integer (1.0)")
h = '{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}'
add("string_shape", st(h, b"\0" * 4), 9, "a", "shape dimension is not a number")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}'
add("offsets_not_array", st(h, b"\0" * 4), 9, "a", '"data_offsets" is not an array')
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}'
add("offsets_one_element", st(h, b"\0" * 4), 9, "a", '"data_offsets" has 1 elements, expected 2')
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}'
add("offsets_three_elements", st(h, b"\0" * 4), 9, "a", '"data_offsets" has 3 elements')
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}'
add("negative_offset", st(h, b"\0" * 4), 9, "a", "data_offsets begin is negative (-4)")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}'
add("float_offset", st(h, b"\0" * 4), 9, "a", "data_offsets end is not an integer")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,null]}}'
add("null_offset", st(h, b"\0" * 4), 9, "a", "data_offsets end is not a number (null)")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}'
add("begin_after_end", st(h, b"\0" * 8), ds(h) + 8, "a", "data_offsets begin 8 is greater than end 4")
h = '{"a":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}'
add("numel_overflow", st(h, b"\0" * 4), ds(h), "a",
    "element count of shape [4294967296, 4294967296, 2] overflows 64 bits")
h = '{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}'
add("bits_overflow", st(h, b"\0" * 4), ds(h), "a", "size in bits of 4611686018427387904 F32 elements overflows")
h = '{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}'
add("f4_odd_count", st(h, b"\0" * 2), ds(h), "a", "are 12 bits, not a whole number of bytes")
h = '{"a":{"dtype":"F6_E2M3","shape":[5],"data_offsets":[0,4]}}'
add("f6_partial_byte", st(h, b"\0" * 4), ds(h), "a", "are 30 bits, not a whole number of bytes")
h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'
add("size_mismatch", st(h, b"\0" * 4), ds(h), "a",
    "data_offsets [0, 4] span 4 bytes but dtype F32 with shape [2] needs 8 bytes")
h = '{"a":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}}'
add("scalar_size_mismatch", st(h, b"\0" * 4), ds(h), "a", "shape [] needs 2 bytes")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}'
add("hole", st(h, b"\0" * 12), ds(h) + 8, "b",
    "hole in the data section: data begins at data offset 8 but tensor 'a' ends at 4")
h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
add("overlap", st(h, b"\0" * 12), ds(h) + 4, "b", "overlaps tensor 'a' which ends at data offset 8")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
add("same_range_twice", st(h, b"\0" * 4), ds(h), "b", "overlaps tensor 'a'")
h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}'
add("empty_tensor_inside_other", st(h, b"\0" * 8), ds(h) + 4, "e", "overlaps tensor 'a'")
h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
add("first_not_at_zero", st(h, b"\0" * 8), ds(h) + 4, "a", "begins at data offset 4, not 0")
h = '{"a":{' + E + '}}'
add("trailing_bytes", st(h, b"\0" * 6), ds(h) + 4, None,
    "trailing bytes after the last tensor's data: 2 bytes from byte %d to the end of the file "
    "(file size %d)" % (ds(h) + 4, ds(h) + 6))
add("no_tensors_trailing_bytes", st("{}", b"\0"), 10, None,
    "trailing bytes after the last tensor's data: 1 byte from byte 10")
h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
add("data_past_end", st(h, b"\0" * 4), ds(h) + 4, "a", "data ends at data offset 8, past the end of the file")
h = '{"":{' + E + '}}'
add("empty_name", st(h, b"\0" * 4), 9, None, "empty tensor name in header")
hb = b'{"a":{' + E.encode() + b'}}   x'
add("padding_then_garbage", st(hb, b"\0" * 4), 8 + hb.index(b"x"), None, "unexpected bytes after")

valid = {
    "valid_empty": st("{}"),
    "valid_metadata_only": st('{"__metadata__":{"format":"pt"}}', pad=5),
    "valid_two_tensors": st('{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,2],'
                            '"data_offsets":[4,12]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}',
                            bytes(range(12)), pad=7),
    "valid_empty_tensors": st('{"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
                              '"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},'
                              '"e1":{"dtype":"I64","shape":[4,0],"data_offsets":[3,3]},'
                              '"b":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[3,4]},'
                              '"e2":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}', b"\1\2\3\4"),
}

if __name__ == "__main__":
    names = set()
    with open(os.path.join(HERE, "manifest.tsv"), "w") as m:
        m.write("# file\toffset\ttensor\tmessage substring (generated by generate.py)\n")
        for name, data, offset, tensor, msg in cases:
            assert name not in names, name
            names.add(name)
            with open(os.path.join(HERE, name + ".safetensors"), "wb") as f:
                f.write(data)
            m.write("%s.safetensors\t%s\t%s\t%s\n" % (name, "-" if offset is None else offset,
                                                     "-" if tensor is None else tensor, msg))
    os.makedirs(SEEDS, exist_ok=True)
    for name, data in valid.items():
        with open(os.path.join(SEEDS, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("%d malformed files, %d valid seeds" % (len(cases), len(valid)))
