package boltstore

// DecodeV2ForTest reads a record of layout 1 or 2, for the migration tests.
var DecodeV2ForTest = decodeV2
