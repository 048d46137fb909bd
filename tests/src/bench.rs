//! The one line format every benchmark prints its headline figures in, for `scripts/bench` to gather into one
//! table: a figure, its value, the baseline measured in the same run, their ratio, and the target.

/// Prints one row: `bench-row<TAB>figure<TAB>value<TAB>baseline<TAB>ratio<TAB>target`.
pub fn row(figure: &str, value: &str, baseline: &str, ratio: f64, target: &str) {
    println!("bench-row\t{figure}\t{value}\t{baseline}\t{ratio:.2}x\t{target}");
}

/// Prints a row with no baseline of its own: `scripts/bench` pairs it with another run's row (the same shape on
/// another store, say) and fills in the ratio.
pub fn row_alone(figure: &str, value: &str, target: &str) {
    println!("bench-row\t{figure}\t{value}\t-\t-\t{target}");
}
