"""One module a scanner format, each with `make(folder, source) -> [slide, ...]`: writes its
test slides into `folder` from `source` (an H x W x 3 uint8 RGB image) and describes each as
tools/make_vendor_slides.py documents (name, format, path, notes, reference, levels, regions,
associated, refuse)."""
