package ocr

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"sync"
)

// pngBuffers reuses the PNG encoder's buffers across images.
type pngBuffers struct{ p sync.Pool }

func (b *pngBuffers) Get() *png.EncoderBuffer {
	e, _ := b.p.Get().(*png.EncoderBuffer)
	return e
}

func (b *pngBuffers) Put(e *png.EncoderBuffer) { b.p.Put(e) }

// pngEncoder stores images uncompressed: the noise in the images leaves zlib little to gain
// (BestSpeed halves a 640 x 640 page, 1.2 MB, at 8 times the time), and the sets' .npy inputs
// are several times larger anyway.
var pngEncoder = png.Encoder{CompressionLevel: png.NoCompression, BufferPool: &pngBuffers{}}

// writePNG encodes img as PNG at path.
func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	if err := pngEncoder.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write image %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write image %s: %w", path, err)
	}
	return nil
}
