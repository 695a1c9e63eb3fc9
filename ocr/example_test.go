package ocr_test

import (
	"fmt"

	"github.com/convpca/convpca/ocr"
)

func ExampleCharsRight() {
	truth := "Invoice 2024-05-17"
	for _, read := range []string{"Invoice 2024-05-17", "lnvoice 2024-05-11", "Invoice"} {
		fmt.Printf("%-20q edits %2d  chars right %.3f\n", read, ocr.EditDistance(read, truth), ocr.CharsRight(read, truth))
	}
	// Output:
	// "Invoice 2024-05-17" edits  0  chars right 1.000
	// "lnvoice 2024-05-11" edits  2  chars right 0.889
	// "Invoice"            edits 11  chars right 0.389
}
