package rewrite

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// conv2d is a direct float64 reference: x is c x h x w, w is out x c x kh x kw.
func conv2d(x []float64, c, h, wd int, w []float64, out, kh, kw int, bias []float64, stride, pad, dil, oh, ow int) []float64 {
	return conv2dPads(x, c, h, wd, w, out, kh, kw, bias, stride, pad, pad, dil, oh, ow)
}

// conv2dPads is conv2d with padH zeros before the first row and padW before the first column
// (the pads after them follow from oh and ow).
func conv2dPads(x []float64, c, h, wd int, w []float64, out, kh, kw int, bias []float64, stride, padH, padW, dil, oh, ow int) []float64 {
	y := make([]float64, out*oh*ow)
	for o := 0; o < out; o++ {
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				s := 0.0
				if bias != nil {
					s = bias[o]
				}
				for ch := 0; ch < c; ch++ {
					for a := 0; a < kh; a++ {
						for b := 0; b < kw; b++ {
							r, q := i*stride-padH+a*dil, j*stride-padW+b*dil
							if r >= 0 && r < h && q >= 0 && q < wd {
								s += w[((o*c+ch)*kh+a)*kw+b] * x[(ch*h+r)*wd+q]
							}
						}
					}
				}
				y[(o*oh+i)*ow+j] = s
			}
		}
	}
	return y
}

func TestPatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct{ stride, pad, dil int }{{1, 0, 1}, {2, 1, 1}, {1, 2, 2}, {3, 1, 2}} {
		const c, h, wd, out, kh, kw = 3, 7, 6, 4, 3, 2
		oh := (h+2*tc.pad-(kh-1)*tc.dil-1)/tc.stride + 1
		ow := (wd+2*tc.pad-(kw-1)*tc.dil-1)/tc.stride + 1
		n := &onnxio.Node{Op: "Conv", Attrs: nil}
		n.SetAttr(onnxio.IntsAttr("strides", []int64{int64(tc.stride), int64(tc.stride)}))
		n.SetAttr(onnxio.IntsAttr("pads", []int64{int64(tc.pad), int64(tc.pad), int64(tc.pad), int64(tc.pad)}))
		n.SetAttr(onnxio.IntsAttr("dilations", []int64{int64(tc.dil), int64(tc.dil)}))
		g, err := ConvGeometry(n, []int{kh, kw}, []int{h, wd}, []int{oh, ow})
		if err != nil {
			t.Fatal(err)
		}
		x := randVec(rng, c*h*wd)
		x32 := make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
			x[i] = float64(x32[i])
		}
		w := randVec(rng, out*c*kh*kw)
		b := randVec(rng, out)
		want := conv2d(x, c, h, wd, w, out, kh, kw, b, tc.stride, tc.pad, tc.dil, oh, ow)
		cols := c*kh*kw + 1
		p := make([]float64, oh*ow*cols)
		g.Patches(p, x32, c, []int{h, wd}, []int{oh, ow})
		for pos := 0; pos < oh*ow; pos++ {
			for o := 0; o < out; o++ {
				s := b[o] * p[pos*cols+cols-1]
				for j := 0; j < cols-1; j++ {
					s += w[o*(cols-1)+j] * p[pos*cols+j]
				}
				if math.Abs(s-want[o*oh*ow+pos]) > 1e-12 {
					t.Fatalf("%+v: position %d channel %d: patches give %v, conv %v", tc, pos, o, s, want[o*oh*ow+pos])
				}
			}
		}
	}
}

// TestPatchesPads: asymmetric explicit pads and auto_pad SAME_UPPER / SAME_LOWER (begin pads
// as the ONNX spec derives them: total = max(0, (out−1)·stride + (k−1)·dil + 1 − in), the odd
// element at the end for SAME_UPPER, at the beginning for SAME_LOWER) give the direct conv.
func TestPatchesPads(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	const c, h, wd, out, kh, kw = 2, 7, 6, 3, 3, 4
	for _, tc := range []struct {
		name   string
		stride int
		dil    int
		pads   []int64 // top, left, bottom, right; nil with auto
		auto   string
	}{
		{"asymmetric", 1, 1, []int64{0, 2, 1, 0}, ""},
		{"asymmetric strided", 2, 1, []int64{2, 0, 0, 3}, ""},
		{"asymmetric dilated", 1, 2, []int64{1, 3, 2, 1}, ""},
		{"same upper", 1, 1, nil, "SAME_UPPER"},
		{"same upper strided", 2, 1, nil, "SAME_UPPER"},
		{"same lower", 1, 1, nil, "SAME_LOWER"},
		{"same lower strided dilated", 3, 2, nil, "SAME_LOWER"},
	} {
		n := &onnxio.Node{Op: "Conv"}
		n.SetAttr(onnxio.IntsAttr("strides", []int64{int64(tc.stride), int64(tc.stride)}))
		n.SetAttr(onnxio.IntsAttr("dilations", []int64{int64(tc.dil), int64(tc.dil)}))
		var oh, ow, padH, padW int
		if tc.auto == "" {
			n.SetAttr(onnxio.IntsAttr("pads", tc.pads))
			oh = (h+int(tc.pads[0]+tc.pads[2])-(kh-1)*tc.dil-1)/tc.stride + 1
			ow = (wd+int(tc.pads[1]+tc.pads[3])-(kw-1)*tc.dil-1)/tc.stride + 1
			padH, padW = int(tc.pads[0]), int(tc.pads[1])
		} else {
			n.SetAttr(&onnxpb.AttributeProto{Name: proto.String("auto_pad"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(tc.auto)})
			oh, ow = (h+tc.stride-1)/tc.stride, (wd+tc.stride-1)/tc.stride
			begin := func(in, o, k int) int {
				total := max(0, (o-1)*tc.stride+(k-1)*tc.dil+1-in)
				if tc.auto == "SAME_UPPER" {
					return total / 2
				}
				return total - total/2
			}
			padH, padW = begin(h, oh, kh), begin(wd, ow, kw)
		}
		g, err := ConvGeometry(n, []int{kh, kw}, []int{h, wd}, []int{oh, ow})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		x := randVec(rng, c*h*wd)
		x32 := make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
			x[i] = float64(x32[i])
		}
		w := randVec(rng, out*c*kh*kw)
		want := conv2dPads(x, c, h, wd, w, out, kh, kw, nil, tc.stride, padH, padW, tc.dil, oh, ow)
		cols := c*kh*kw + 1
		p := make([]float64, oh*ow*cols)
		g.Patches(p, x32, c, []int{h, wd}, []int{oh, ow})
		for pos := 0; pos < oh*ow; pos++ {
			for o := 0; o < out; o++ {
				s := 0.0
				for j := 0; j < cols-1; j++ {
					s += w[o*(cols-1)+j] * p[pos*cols+j]
				}
				if math.Abs(s-want[o*oh*ow+pos]) > 1e-12 {
					t.Fatalf("%s: position %d channel %d: patches give %v, conv %v", tc.name, pos, o, s, want[o*oh*ow+pos])
				}
			}
		}
	}
}

// TestRefit: on a random padded, strided Conv with bias, whose input is perturbed (as earlier
// compressed layers perturb it), the refitted core reconstructs the projected original output
// no worse than the projection, and equals a direct least-squares solve of the stacked system.
func TestRefit(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const c, h, wd, out, kh, kw, stride, pad = 4, 6, 6, 5, 3, 3, 2, 1
	const r, k, samples = 3, 2, 40
	oh, ow := (h+2*pad-kh)/stride+1, (wd+2*pad-kw)/stride+1
	n := &onnxio.Node{Op: "Conv"}
	n.SetAttr(onnxio.IntsAttr("strides", []int64{stride, stride}))
	n.SetAttr(onnxio.IntsAttr("pads", []int64{pad, pad, pad, pad}))
	g, err := ConvGeometry(n, []int{kh, kw}, []int{h, wd}, []int{oh, ow})
	if err != nil {
		t.Fatal(err)
	}
	w := randDense(rng, out, c*kh*kw)
	b := randVec(rng, out)
	u := orthonormal(rng, c, r)
	v := orthonormal(rng, out, k)
	proj := InputSide(w, c, u) // out x r·kk
	core, _ := OutputSide(proj, b, make([]float64, out), v)
	var cb mat.VecDense // projection's core bias: Vᵀ b
	cb.MulVec(v.T(), mat.NewVecDense(out, b))

	cols := r*kh*kw + 1
	eq := NewNormalEq(cols, k)
	var allP, allT []float64
	pbuf := make([]float64, oh*ow*cols)
	for s := 0; s < samples; s++ {
		x := randVec(rng, c*h*wd)
		y := conv2d(x, c, h, wd, w.RawMatrix().Data, out, kh, kw, b, stride, pad, 1, oh, ow)
		// The compressed model's input: perturbed, then projected by Uᵀ per position.
		z := make([]float32, r*h*wd)
		for pos := 0; pos < h*wd; pos++ {
			for j := 0; j < r; j++ {
				sum := 0.0
				for ch := 0; ch < c; ch++ {
					sum += u.At(ch, j) * (x[ch*h*wd+pos] + 0.3*rng.NormFloat64())
				}
				z[j*h*wd+pos] = float32(sum)
			}
		}
		g.Patches(pbuf, z, r, []int{h, wd}, []int{oh, ow})
		tgt := make([]float64, oh*ow*k)
		for pos := 0; pos < oh*ow; pos++ {
			for j := 0; j < k; j++ {
				for o := 0; o < out; o++ {
					tgt[pos*k+j] += v.At(o, j) * y[o*oh*ow+pos]
				}
			}
		}
		eq.Add(pbuf, tgt, oh*ow)
		allP = append(allP, pbuf...)
		allT = append(allT, tgt...)
	}
	fit, err := eq.Solve(1e-12)
	if err != nil {
		t.Fatal(err)
	}
	// The projection as a solution of the same system: X = [core | Vᵀb]ᵀ.
	px := mat.NewDense(cols, k, nil)
	for j := 0; j < k; j++ {
		for q := 0; q < cols-1; q++ {
			px.Set(q, j, core.At(j, q))
		}
		px.Set(cols-1, j, cb.AtVec(j))
	}
	refitErr, projErr := eq.Error(fit), eq.Error(px)
	t.Logf("reconstruction error: projection %.6g, refit %.6g", projErr, refitErr)
	if refitErr > projErr {
		t.Errorf("refit error %v > projection error %v", refitErr, projErr)
	}
	// Direct least squares on the stacked system.
	rows := len(allT) / k
	var direct mat.Dense
	if err := direct.Solve(mat.NewDense(rows, cols, allP), mat.NewDense(rows, k, allT)); err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(fit, &direct, 1e-6) {
		t.Errorf("normal-equation solution differs from the direct least-squares solve:\n%v\n%v", mat.Formatted(fit), mat.Formatted(&direct))
	}
	// Error() agrees with the residual computed directly.
	var res mat.Dense
	res.Mul(mat.NewDense(rows, cols, allP), fit)
	direct2 := 0.0
	for i, tv := range allT {
		d := tv - res.RawMatrix().Data[i]
		direct2 += d * d
	}
	if math.Abs(direct2-refitErr) > 1e-8*math.Max(1, direct2) {
		t.Errorf("Error() = %v, direct residual %v", refitErr, direct2)
	}
}
