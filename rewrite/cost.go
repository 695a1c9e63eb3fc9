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

// outputSideCost is the cost of the output-side factorization of a Conv with m = in/group ·
// kernel weights per output channel, out channels, rank k and spatial output positions:
// Conv(k x m) without bias, then a 1x1 Conv(out x k) with bias.
func outputSideCost(out, m, k int, spatial int64) Cost {
	return Cost{
		MACs:   ConvMACs(k, m, 1, spatial) + ConvMACs(out, k, 1, spatial),
		Params: ConvParams(k, m, 1, false) + ConvParams(out, k, 1, true),
	}
}
