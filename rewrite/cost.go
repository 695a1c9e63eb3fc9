package rewrite

// ConvMACs returns the multiply-accumulates of one sample through a Conv: each of the
// spatial output positions computes out channels from inPerGroup channels over a kernel of
// kernel elements.
func ConvMACs(out, inPerGroup, kernel int, spatial int64) int64 {
	return spatial * int64(out) * int64(inPerGroup) * int64(kernel)
}

// ConvParams returns the weights (and biases, when bias is true) of a Conv.
func ConvParams(out, inPerGroup, kernel int, bias bool) int64 {
	p := int64(out) * int64(inPerGroup) * int64(kernel)
	if bias {
		p += int64(out)
	}
	return p
}

// Cost is what one sample costs through a layer.
type Cost struct {
	MACs   int64 `json:"macs"`
	Params int64 `json:"params"`
}

// factorCost is the cost of replacing a Conv (out channels, in input channels, kk kernel
// elements, bias or not) by 1x1 Conv(Uᵀ) with r channels at spatialIn input positions (r = 0:
// no input side), the core Conv, and 1x1 Conv(V) with k channels plus bias at spatialOut
// output positions (k = 0: no output side).
func factorCost(out, in, kk int, bias bool, r, k int, spatialIn, spatialOut int64) Cost {
	var c Cost
	coreIn, coreOut := in, out
	if r > 0 {
		c.MACs += ConvMACs(r, in, 1, spatialIn)
		c.Params += ConvParams(r, in, 1, false)
		coreIn = r
	}
	if k > 0 {
		c.MACs += ConvMACs(out, k, 1, spatialOut)
		c.Params += ConvParams(out, k, 1, true)
		coreOut = k
	}
	c.MACs += ConvMACs(coreOut, coreIn, kk, spatialOut)
	c.Params += ConvParams(coreOut, coreIn, kk, bias && k == 0)
	return c
}
