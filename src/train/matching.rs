//! The linear sum assignment problem as `scipy.optimize.linear_sum_assignment` solves it (the
//! shortest augmenting path algorithm of Crouse 2016, scipy's `rectangular_lsap.cpp`): the
//! matching DETR's Hungarian matcher makes between predictions and targets. Same semantics:
//! rectangular costs, `+inf` forbids a pair, NaN and `-inf` are invalid, ties broken as scipy
//! breaks them, rows returned sorted.
use crate::{Error, Result};

/// The assignment of minimum (or, with `maximize`, maximum) total cost of the `rows × cols`
/// row-major matrix `cost`: `min(rows, cols)` pairs `(row_ind, col_ind)`, `row_ind` ascending.
pub fn linear_sum_assignment(
    cost: &[f64],
    rows: usize,
    cols: usize,
    maximize: bool,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if rows.checked_mul(cols) != Some(cost.len()) {
        return Err(Error::Shape(format!(
            "linear_sum_assignment: {} costs for a {rows}×{cols} matrix",
            cost.len()
        )));
    }
    if rows == 0 || cols == 0 {
        return Ok((vec![], vec![]));
    }
    // Work on a matrix with at least as many columns as rows.
    let transpose = cols < rows;
    let (nr, nc) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut c = vec![0f64; nr * nc];
    for i in 0..nr {
        for j in 0..nc {
            let v = if transpose {
                cost[j * cols + i]
            } else {
                cost[i * cols + j]
            };
            c[i * nc + j] = if maximize { -v } else { v };
        }
    }
    if c.iter().any(|v| v.is_nan() || *v == f64::NEG_INFINITY) {
        return Err(Error::Msg(
            "linear_sum_assignment: the cost matrix contains invalid numeric entries (NaN or -inf)"
                .into(),
        ));
    }
    let mut u = vec![0f64; nr];
    let mut v = vec![0f64; nc];
    let mut shortest = vec![f64::INFINITY; nc];
    let mut path = vec![usize::MAX; nc];
    let mut col4row = vec![usize::MAX; nr];
    let mut row4col = vec![usize::MAX; nc];
    let mut sr = vec![false; nr];
    let mut sc = vec![false; nc];
    let mut remaining = vec![0usize; nc];
    for cur in 0..nr {
        // Shortest augmenting path from row `cur` (Dijkstra on reduced costs).
        let mut min_val = 0f64;
        let mut i = cur;
        let mut num_remaining = nc;
        for (it, r) in remaining.iter_mut().enumerate() {
            *r = nc - it - 1;
        }
        sr.iter_mut().for_each(|x| *x = false);
        sc.iter_mut().for_each(|x| *x = false);
        shortest.iter_mut().for_each(|x| *x = f64::INFINITY);
        let sink = loop {
            let mut index = usize::MAX;
            let mut lowest = f64::INFINITY;
            sr[i] = true;
            for (it, &j) in remaining[..num_remaining].iter().enumerate() {
                let r = min_val + c[i * nc + j] - u[i] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                // Among equal minima prefer a free column: a new sink (scipy's rule).
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == usize::MAX) {
                    lowest = shortest[j];
                    index = it;
                }
            }
            min_val = lowest;
            if min_val == f64::INFINITY || index == usize::MAX {
                return Err(Error::Msg(
                    "linear_sum_assignment: the cost matrix is infeasible (no full assignment avoids +inf)"
                        .into(),
                ));
            }
            let j = remaining[index];
            sc[j] = true;
            num_remaining -= 1;
            remaining[index] = remaining[num_remaining];
            if row4col[j] == usize::MAX {
                break j;
            }
            i = row4col[j];
        };
        // Update the dual variables.
        u[cur] += min_val;
        for r in 0..nr {
            if sr[r] && r != cur {
                u[r] += min_val - shortest[col4row[r]];
            }
        }
        for j in 0..nc {
            if sc[j] {
                v[j] -= min_val - shortest[j];
            }
        }
        // Augment along the path.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == cur {
                break;
            }
        }
    }
    if transpose {
        // Rows of the original are our columns: sort them.
        let mut order: Vec<usize> = (0..nr).collect();
        order.sort_by_key(|&k| col4row[k]);
        let a = order.iter().map(|&k| col4row[k]).collect();
        Ok((a, order))
    } else {
        Ok(((0..nr).collect(), col4row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases() {
        // scipy's docstring example.
        let c = [4., 1., 3., 2., 0., 5., 3., 2., 2.];
        let (r, k) = linear_sum_assignment(&c, 3, 3, false).unwrap();
        assert_eq!((r, k), (vec![0, 1, 2], vec![1, 0, 2]));
        // Rectangular both ways.
        let c = [1., 2., 3., 6., 5., 4.];
        assert_eq!(
            linear_sum_assignment(&c, 2, 3, false).unwrap(),
            (vec![0, 1], vec![0, 2])
        );
        let ct = [1., 6., 2., 5., 3., 4.];
        assert_eq!(
            linear_sum_assignment(&ct, 3, 2, false).unwrap(),
            (vec![0, 2], vec![0, 1])
        );
        assert_eq!(
            linear_sum_assignment(&c, 2, 3, true).unwrap(),
            (vec![0, 1], vec![2, 0])
        );
        assert_eq!(
            linear_sum_assignment(&[], 0, 4, false).unwrap(),
            (vec![], vec![])
        );
        let inf = f64::INFINITY;
        assert_eq!(
            linear_sum_assignment(&[inf, 1., 1., inf], 2, 2, false).unwrap(),
            (vec![0, 1], vec![1, 0])
        );
        assert!(linear_sum_assignment(&[inf, inf, 1., 1.], 2, 2, false)
            .unwrap_err()
            .to_string()
            .contains("infeasible"));
        assert!(linear_sum_assignment(&[f64::NAN, 1.], 1, 2, false)
            .unwrap_err()
            .to_string()
            .contains("invalid"));
        assert!(linear_sum_assignment(&[1., 2.], 2, 2, false).is_err());
    }
}
