library(testthat)
library(bnlstm)

test_check("bnlstm")
