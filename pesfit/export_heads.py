"""Compiled *heads*: the energy of a model as a function of its basis program's outputs.

:mod:`invariants.codegen` prints the program (distances -> transform ->
monomials -> polynomials ``p``) and its reverse sweep; a head adds what turns
``p`` into an energy when that is not a dot product with weights (see the
codegen module docstring for the protocol).  The C and Fortran texts here
repeat the operations of the Python/Numba evaluators in the same order, so
the compiled energies agree with Python to rounding.

* :class:`KernelHead`: a (symmetrised) kernel expansion, as in
  :mod:`pesfit.models.kernels.base`::

      z = (p[col] - shift) / scale,   z_c = z[v*]   (v* the canonical permutation)
      u = z_c / l,   E = mu + sum_c [A_c phi(s_c) - g1(s_c) W_c . (u - C_c)],  s_c = |u - C_c|^2

* :class:`NetworkHead`: the mean of an ensemble of feed-forward networks on
  standardised outputs, as in :mod:`pesfit.models.nn._kernels`.
"""
from __future__ import annotations

import numpy as np

from invariants.codegen import _f_real

__all__ = ["KernelHead", "NetworkHead"]

#: kernel name -> C and Fortran statements setting phi, g1, g2 from s
_RADIAL_C = {
    "gaussian": ("            phi = exp(-0.5 * s);\n"
                 "            g1 = -phi;\n"
                 "            g2 = phi;\n"),
    "matern52": ("            const double rho = sqrt(5.0 * s);\n"
                 "            const double ex = exp(-rho);\n"
                 "            phi = (1.0 + rho + rho * rho / 3.0) * ex;\n"
                 "            g1 = -(5.0 / 3.0) * (1.0 + rho) * ex;\n"
                 "            g2 = (25.0 / 3.0) * ex;\n"),
}
_RADIAL_F = {
    "gaussian": ("      phi = exp(-0.5_dp * s)\n"
                 "      g1 = -phi\n"
                 "      g2 = phi\n"),
    "matern52": ("      rho = sqrt(5.0_dp * s)\n"
                 "      ex = exp(-rho)\n"
                 "      phi = (1.0_dp + rho + rho * rho / 3.0_dp) * ex\n"
                 "      g1 = -(5.0_dp / 3.0_dp) * (1.0_dp + rho) * ex\n"
                 "      g2 = (25.0_dp / 3.0_dp) * ex\n"),
}


class KernelHead:
    """Kernel expansion over standardised, optionally permuted program outputs.

    Parameters
    ----------
    n_inputs : int
        Number of program outputs ``p``.
    columns : array of int, shape (D,)
        Outputs used as features.
    shift, scale : arrays of shape (D,)
        Standardisation ``z = (p[columns] - shift) / scale``.
    length_scale : array of shape (D,)
        ``l`` (feature units); ``u = z_c / l``.
    centres : array of shape (m, D)
        Scaled centres ``C_c`` (every permuted copy a row).
    energy_coefficients : array of shape (m,)
        ``A_c`` [model energy].
    gradient_coefficients : array of shape (m, D)
        ``W_c`` [model energy].
    permutations : array of int, shape (P, D)
        Feature permutations; with ``P > 1`` the expansion is evaluated at
        the lexicographically smallest ``z[v]``.
    offset : float
        ``mu`` [model energy].
    kernel : {"gaussian", "matern52"}
    """

    def __init__(self, n_inputs, columns, shift, scale, length_scale, centres, energy_coefficients,
                 gradient_coefficients, permutations, offset, kernel):
        if kernel not in _RADIAL_C:
            raise ValueError(f"kernel {kernel!r} cannot be compiled; choose from {sorted(_RADIAL_C)}")
        self.n_inputs = int(n_inputs)
        self.columns = np.asarray(columns, dtype=np.int64)
        D = len(self.columns)
        self.shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (D,)).copy()
        self.scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (D,)).copy()
        self.length_scale = np.broadcast_to(np.asarray(length_scale, dtype=np.float64), (D,)).copy()
        self.centres = np.asarray(centres, dtype=np.float64)
        self.energy_coefficients = np.asarray(energy_coefficients, dtype=np.float64)
        self.gradient_coefficients = np.asarray(gradient_coefficients, dtype=np.float64)
        self.permutations = np.asarray(permutations, dtype=np.int64)
        self.offset = float(offset)
        self.kernel = kernel
        m = len(self.energy_coefficients)
        if D < 1 or np.any((self.columns < 0) | (self.columns >= self.n_inputs)):
            raise ValueError(f"feature columns must index the {self.n_inputs} program outputs")
        if self.centres.shape != (m, D) or self.gradient_coefficients.shape != (m, D) or m < 1:
            raise ValueError(f"kernel head: centres {self.centres.shape} and gradient coefficients "
                             f"{self.gradient_coefficients.shape} must both be ({m}, {D})")
        if self.permutations.ndim != 2 or self.permutations.shape[1] != D or not all(
                sorted(p) == list(range(D)) for p in self.permutations.tolist()):
            raise ValueError("kernel head: permutations must be rows that permute the features")
        if not (np.all(self.scale > 0) and np.all(self.length_scale > 0)):
            raise ValueError("kernel head: scales and length scales must be positive")
        self.description = (f"{kernel} kernel expansion over {m} centres, {D} features, "
                            f"{len(self.permutations)} permutation(s)")

    def tables(self):
        return [
            ("HEAD_COL", "int", self.columns, "feature k = (p[HEAD_COL[k]] - HEAD_SHIFT[k]) / HEAD_SCALE[k]"),
            ("HEAD_SHIFT", "double", self.shift, ""),
            ("HEAD_SCALE", "double", self.scale, ""),
            ("HEAD_LSCALE", "double", self.length_scale, "kernel length scale per feature"),
            ("HEAD_PERM", "int", self.permutations.ravel(), "feature permutations, row-major (P, D)"),
            ("HEAD_CENTRE", "double", self.centres.ravel(), "scaled centres, row-major (m, D)"),
            ("HEAD_A", "double", self.energy_coefficients, "energy coefficients (model energy unit)"),
            ("HEAD_W", "double", self.gradient_coefficients.ravel(), "gradient coefficients, row-major (m, D)"),
        ]

    def _sizes(self):
        return len(self.columns), len(self.energy_coefficients), len(self.permutations)

    def c_function(self) -> str:
        D, m, P = self._sizes()
        return f"""#define HEAD_D {D}
#define HEAD_M {m}
#define HEAD_P {P}
static const double HEAD_MU = {self.offset!r};  /* energy offset (model energy unit) */

static double head(const double *restrict p, double *restrict pbar)
{{
    double z[HEAD_D], u[HEAD_D], d[HEAD_D], gu[HEAD_D];
    double e = 0.0, s, wd, phi, g1, g2, f;
    int k, c, q, best = 0;

    for (k = 0; k < HEAD_D; ++k)
        z[k] = (p[HEAD_COL[k]] - HEAD_SHIFT[k]) / HEAD_SCALE[k];
    for (q = 1; q < HEAD_P; ++q)  /* canonical representative of the orbit of z */
        for (k = 0; k < HEAD_D; ++k) {{
            const double a = z[HEAD_PERM[q * HEAD_D + k]], b = z[HEAD_PERM[best * HEAD_D + k]];
            if (a < b) {{
                best = q;
                break;
            }}
            if (a > b)
                break;
        }}
    for (k = 0; k < HEAD_D; ++k) {{
        u[k] = z[HEAD_PERM[best * HEAD_D + k]] / HEAD_LSCALE[k];
        gu[k] = 0.0;
    }}
    for (c = 0; c < HEAD_M; ++c) {{
        const double *cc = HEAD_CENTRE + (size_t) c * HEAD_D, *wc = HEAD_W + (size_t) c * HEAD_D;
        s = 0.0;
        wd = 0.0;
        for (k = 0; k < HEAD_D; ++k) {{
            const double dk = u[k] - cc[k];
            d[k] = dk;
            s += dk * dk;
            wd += wc[k] * dk;
        }}
        {{
{_RADIAL_C[self.kernel]}        }}
        e += HEAD_A[c] * phi - g1 * wd;
        if (pbar != NULL) {{
            f = HEAD_A[c] * g1 - g2 * wd;
            for (k = 0; k < HEAD_D; ++k)
                gu[k] += f * d[k] - g1 * wc[k];
        }}
    }}
    if (pbar != NULL) {{
        for (k = 0; k < NOUT; ++k)
            pbar[k] = 0.0;
        for (k = 0; k < HEAD_D; ++k) {{  /* dE/dz[v*[k]] = dE/du[k] / l[k] */
            const int j = HEAD_PERM[best * HEAD_D + k];
            pbar[HEAD_COL[j]] += gu[k] / HEAD_LSCALE[k] / HEAD_SCALE[j];
        }}
    }}
    return e + HEAD_MU;
}}
"""

    def fortran_function(self) -> str:
        D, m, P = self._sizes()
        return f"""  subroutine head(p, e, pbar, want_grad)
    integer, parameter :: head_d = {D}, head_m = {m}, head_p = {P}
    real(dp), parameter :: head_mu = {_f_real(self.offset)}  ! energy offset (model energy unit)
    real(dp), intent(in) :: p(0:nout-1)
    real(dp), intent(out) :: e, pbar(0:nout-1)
    logical, intent(in) :: want_grad
    real(dp) :: z(0:head_d-1), u(0:head_d-1), d(0:head_d-1), gu(0:head_d-1)
    real(dp) :: s, wd, phi, g1, g2, f, dk, a, b
{"    real(dp) :: rho, ex" + chr(10) if self.kernel == "matern52" else ""}    integer :: k, c, q, best, j, off, np_

    np_ = head_p  ! a variable: with one permutation the loop below is empty
    do k = 0, head_d - 1
      z(k) = (p(head_col(k)) - head_shift(k)) / head_scale(k)
    end do
    best = 0
    do q = 1, np_ - 1  ! canonical representative of the orbit of z
      do k = 0, head_d - 1
        a = z(head_perm(q * head_d + k))
        b = z(head_perm(best * head_d + k))
        if (a < b) then
          best = q
          exit
        end if
        if (a > b) exit
      end do
    end do
    do k = 0, head_d - 1
      u(k) = z(head_perm(best * head_d + k)) / head_lscale(k)
    end do
    gu = 0.0_dp
    e = 0.0_dp
    do c = 0, head_m - 1
      off = c * head_d
      s = 0.0_dp
      wd = 0.0_dp
      do k = 0, head_d - 1
        dk = u(k) - head_centre(off + k)
        d(k) = dk
        s = s + dk * dk
        wd = wd + head_w(off + k) * dk
      end do
{_RADIAL_F[self.kernel]}      e = e + (head_a(c) * phi - g1 * wd)
      if (want_grad) then
        f = head_a(c) * g1 - g2 * wd
        do k = 0, head_d - 1
          gu(k) = gu(k) + (f * d(k) - g1 * head_w(off + k))
        end do
      end if
    end do
    pbar = 0.0_dp
    if (want_grad) then
      do k = 0, head_d - 1  ! dE/dz(v*(k)) = dE/du(k) / l(k)
        j = head_perm(best * head_d + k)
        pbar(head_col(j)) = pbar(head_col(j)) + gu(k) / head_lscale(k) / head_scale(j)
      end do
    end if
    e = e + head_mu
  end subroutine head
"""


#: activation name -> (C, Fortran) statements setting a (value) and d (derivative) from s
_ACTIVATION = {
    "tanh": ("a = tanh(s);\n            d = 1.0 - a * a;",
             "a = tanh(s)\n          d = 1.0_dp - a * a"),
    "softplus": ("a = fmax(s, 0.0) + log1p(exp(-fabs(s)));\n            d = 0.5 * (1.0 + tanh(0.5 * s));",
                 "a = max(s, 0.0_dp) + log1p_(exp(-abs(s)))\n          d = 0.5_dp * (1.0_dp + tanh(0.5_dp * s))"),
    "sigmoid": ("a = 0.5 * (1.0 + tanh(0.5 * s));\n            d = a * (1.0 - a);",
                "a = 0.5_dp * (1.0_dp + tanh(0.5_dp * s))\n          d = a * (1.0_dp - a)"),
}


class NetworkHead:
    """Mean of an ensemble of feed-forward networks on standardised program outputs.

    Parameters
    ----------
    n_inputs : int
        Number of program outputs ``p``.
    features : array of int, shape (D,)
        Outputs fed to the network: ``z_j = (p[features[j]] - mean_j) / scale_j``.
    mean, scale : arrays of shape (D,)
    sizes : sequence of int
        Layer sizes ``(D, h_1, ..., 1)``.
    thetas : array of shape (K, n_parameters)
        Flat parameters per member, layer by layer: ``W`` (n_out x n_in,
        row-major) then ``b``.
    activation : {"tanh", "softplus", "sigmoid"}
    energy_shift, energy_scale : float
        Member energy ``shift + scale * y`` [model energy].
    """

    def __init__(self, n_inputs, features, mean, scale, sizes, thetas, activation, energy_shift, energy_scale):
        if activation not in _ACTIVATION:
            raise ValueError(f"activation {activation!r} cannot be compiled; choose from {sorted(_ACTIVATION)}")
        self.n_inputs = int(n_inputs)
        self.features = np.asarray(features, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
        self.activation = activation
        self.energy_shift = float(energy_shift)
        self.energy_scale = float(energy_scale)
        D = len(self.features)
        n_par = int(sum((self.sizes[i] + 1) * self.sizes[i + 1] for i in range(len(self.sizes) - 1)))
        if len(self.sizes) < 3 or self.sizes[0] != D or self.sizes[-1] != 1 or np.any(self.sizes < 1):
            raise ValueError(f"network layer sizes {self.sizes.tolist()} must run from {D} inputs to 1 output "
                             "through at least one hidden layer")
        if np.any((self.features < 0) | (self.features >= self.n_inputs)):
            raise ValueError(f"network inputs must index the {self.n_inputs} program outputs")
        if self.mean.shape != (D,) or self.scale.shape != (D,) or not np.all(self.scale > 0):
            raise ValueError(f"network input standardisation must have shape ({D},) with positive scales")
        if self.thetas.shape[1] != n_par:
            raise ValueError(f"network parameters have {self.thetas.shape[1]} entries per member, the layer "
                             f"sizes need {n_par}")
        self.description = (f"mean of {len(self.thetas)} {activation} network(s) with layers "
                            f"{'-'.join(str(s) for s in self.sizes.tolist())}")

    def tables(self):
        return [
            ("NET_FEAT", "int", self.features, "network input j = (p[NET_FEAT[j]] - NET_MEAN[j]) / NET_SCALE[j]"),
            ("NET_MEAN", "double", self.mean, ""),
            ("NET_SCALE", "double", self.scale, ""),
            ("NET_SIZES", "int", self.sizes, "layer sizes, inputs to output"),
            ("NET_THETA", "double", self.thetas.ravel(),
             "parameters per member, per layer W (n_out x n_in, row-major) then b"),
        ]

    def _dims(self):
        sizes = self.sizes.tolist()
        return len(self.features), len(sizes), int(sum(sizes[1:-1])), max(sizes), self.thetas.shape

    def c_function(self) -> str:
        D, L, NH, WID, (K, NP) = self._dims()
        return f"""#define NET_D {D}
#define NET_L {L}        /* layers including inputs and output */
#define NET_NH {NH}      /* hidden units in all */
#define NET_WIDTH {WID}
#define NET_K {K}        /* ensemble members */
#define NET_NP {NP}      /* parameters per member */
static const double NET_SHIFT = {self.energy_shift!r};  /* member energy = NET_SHIFT + NET_ESCALE * y */
static const double NET_ESCALE = {self.energy_scale!r};

/* y of one member at inputs z; with dz != NULL also dy/dz (the Numba kernel's loop order) */
static double network(const double *restrict z, const double *restrict theta, double *restrict dz)
{{
    /* NET_WIDTH spare entries: never read, but they keep gcc's bound analysis of the (dead)
       deeper-layer branches quiet for one-hidden-layer networks */
    double acts[NET_NH + NET_WIDTH], d1s[NET_NH + NET_WIDTH], delta[NET_WIDTH], out[NET_WIDTH];
    double s, a, d, y;
    int l, i, j, k = 0, h = 0, prev = -1, n_in, n_out, row;

    for (l = 0; l < NET_L - 2; ++l) {{
        const int bk = k + NET_SIZES[l + 1] * NET_SIZES[l];
        n_in = NET_SIZES[l];
        n_out = NET_SIZES[l + 1];
        for (i = 0; i < n_out; ++i) {{
            s = theta[bk + i];
            row = k + i * n_in;
            if (prev < 0)
                for (j = 0; j < n_in; ++j)
                    s += theta[row + j] * z[j];
            else
                for (j = 0; j < n_in; ++j)
                    s += theta[row + j] * acts[prev + j];
            {_ACTIVATION[self.activation][0]}
            acts[h + i] = a;
            d1s[h + i] = d;
        }}
        k = bk + n_out;
        prev = h;
        h += n_out;
    }}
    n_in = NET_SIZES[NET_L - 2];
    y = theta[k + n_in];
    for (j = 0; j < n_in; ++j)
        y += theta[k + j] * acts[prev + j];
    if (dz == NULL)
        return y;
    for (j = 0; j < n_in; ++j)
        delta[j] = d1s[prev + j] * theta[k + j];
    for (l = NET_L - 3; l >= 0; --l) {{
        n_in = NET_SIZES[l];
        n_out = NET_SIZES[l + 1];
        k -= n_out * (n_in + 1);
        if (l > 0)
            prev -= n_in;
        for (j = 0; j < n_in; ++j)
            out[j] = 0.0;
        for (i = 0; i < n_out; ++i) {{
            const double di = delta[i];
            row = k + i * n_in;
            for (j = 0; j < n_in; ++j)
                out[j] += theta[row + j] * di;
        }}
        if (l > 0)
            for (j = 0; j < n_in; ++j)
                delta[j] = out[j] * d1s[prev + j];
        else
            for (j = 0; j < n_in; ++j)
                dz[j] = out[j];
    }}
    return y;
}}

static double head(const double *restrict p, double *restrict pbar)
{{
    double z[NET_D], dz[NET_D], zsum[NET_D];
    double e = 0.0;
    int j, m;

    for (j = 0; j < NET_D; ++j) {{
        z[j] = (p[NET_FEAT[j]] - NET_MEAN[j]) / NET_SCALE[j];
        zsum[j] = 0.0;
    }}
    for (m = 0; m < NET_K; ++m) {{
        const double y = network(z, NET_THETA + (size_t) m * NET_NP, pbar != NULL ? dz : NULL);
        e += NET_SHIFT + NET_ESCALE * y;
        if (pbar != NULL)
            for (j = 0; j < NET_D; ++j)
                zsum[j] += dz[j];
    }}
    if (NET_K > 1)
        e /= NET_K;
    if (pbar != NULL) {{
        for (j = 0; j < NOUT; ++j)
            pbar[j] = 0.0;
        for (j = 0; j < NET_D; ++j)
            pbar[NET_FEAT[j]] += NET_ESCALE * (zsum[j] / NET_K) / NET_SCALE[j];
    }}
    return e;
}}
"""

    def fortran_function(self) -> str:
        D, L, NH, WID, (K, NP) = self._dims()
        log1p = ""
        if self.activation == "softplus":
            log1p = """
  pure function log1p_(x) result(y)  ! C's log1p: log(1 + x) without cancellation
    real(dp), intent(in) :: x
    real(dp) :: y
    interface
      pure function c_log1p(v) bind(C, name="log1p") result(w)
        import :: c_double
        real(c_double), value, intent(in) :: v
        real(c_double) :: w
      end function c_log1p
    end interface
    y = c_log1p(x)
  end function log1p_
"""
        return f"""  ! y of one member at inputs z; with want_grad also dz = dy/dz (the Numba kernel's loop order)
  subroutine network(z, theta, y, dz, want_grad)
    integer, parameter :: net_l = {L}, net_nh = {NH}, net_width = {WID}
    real(dp), intent(in) :: z(0:*), theta(0:*)
    real(dp), intent(out) :: y
    real(dp), intent(inout) :: dz(0:*)
    logical, intent(in) :: want_grad
    ! net_width spare entries: never read, but they keep gfortran's bound analysis quiet (see C)
    real(dp) :: acts(0:net_nh+net_width-1), d1s(0:net_nh+net_width-1), delta(0:net_width-1), outv(0:net_width-1)
    real(dp) :: s, a, d, di
    integer :: l, i, j, k, h, prev, n_in, n_out, row, bk

    k = 0
    h = 0
    prev = -1
    do l = 0, net_l - 3
      n_in = net_sizes(l)
      n_out = net_sizes(l + 1)
      bk = k + n_out * n_in
      do i = 0, n_out - 1
        s = theta(bk + i)
        row = k + i * n_in
        if (prev < 0) then
          do j = 0, n_in - 1
            s = s + theta(row + j) * z(j)
          end do
        else
          do j = 0, n_in - 1
            s = s + theta(row + j) * acts(prev + j)
          end do
        end if
          {_ACTIVATION[self.activation][1]}
        acts(h + i) = a
        d1s(h + i) = d
      end do
      k = bk + n_out
      prev = h
      h = h + n_out
    end do
    n_in = net_sizes(net_l - 2)
    y = theta(k + n_in)
    do j = 0, n_in - 1
      y = y + theta(k + j) * acts(prev + j)
    end do
    if (.not. want_grad) return
    do j = 0, n_in - 1
      delta(j) = d1s(prev + j) * theta(k + j)
    end do
    do l = net_l - 3, 0, -1
      n_in = net_sizes(l)
      n_out = net_sizes(l + 1)
      k = k - n_out * (n_in + 1)
      if (l > 0) prev = prev - n_in
      outv(0:n_in-1) = 0.0_dp
      do i = 0, n_out - 1
        di = delta(i)
        row = k + i * n_in
        do j = 0, n_in - 1
          outv(j) = outv(j) + theta(row + j) * di
        end do
      end do
      if (l > 0) then
        do j = 0, n_in - 1
          delta(j) = outv(j) * d1s(prev + j)
        end do
      else
        do j = 0, n_in - 1
          dz(j) = outv(j)
        end do
      end if
    end do
  end subroutine network
{log1p}
  subroutine head(p, e, pbar, want_grad)
    integer, parameter :: net_d = {D}, net_k = {K}, net_np = {NP}
    real(dp), parameter :: net_shift = {_f_real(self.energy_shift)}, net_escale = {_f_real(self.energy_scale)}
    real(dp), intent(in) :: p(0:nout-1)
    real(dp), intent(out) :: e, pbar(0:nout-1)
    logical, intent(in) :: want_grad
    real(dp) :: z(0:net_d-1), dz(0:net_d-1), zsum(0:net_d-1), y
    integer :: j, m

    do j = 0, net_d - 1
      z(j) = (p(net_feat(j)) - net_mean(j)) / net_scale(j)
    end do
    zsum = 0.0_dp
    dz = 0.0_dp
    e = 0.0_dp
    do m = 0, net_k - 1
      call network(z, net_theta(m * net_np:), y, dz, want_grad)
      e = e + (net_shift + net_escale * y)
      if (want_grad) zsum = zsum + dz
    end do
    if (net_k > 1) e = e / net_k
    pbar = 0.0_dp
    if (want_grad) then
      do j = 0, net_d - 1
        pbar(net_feat(j)) = pbar(net_feat(j)) + net_escale * (zsum(j) / net_k) / net_scale(j)
      end do
    end if
  end subroutine head
"""
