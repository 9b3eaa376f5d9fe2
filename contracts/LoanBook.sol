// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {DealEscrow} from "./DealEscrow.sol";
import {LandRegister} from "./LandRegister.sol";
import {BatchItems} from "./BatchItems.sol";

/// @title Mortgage-loan book for deals (주택담보대출)
/// @notice The buyer of a deal requests the loan named in the deal's terms from the named lender, presenting
/// e-certificate hashes (checked by the lender against the CredentialRegistry). The lender approves
/// (amount <= requested, rate, term, 채권최고액) or rejects, once. The approving lender disburses: this
/// contract pulls the approved amount from the lender (the lender approves THIS contract for the token) into
/// the DealEscrow and credits the deal there. Creditors of mortgages on a parcel being sold state their
/// payoff amount per deal; the escrow pays those at settlement.
///
/// Loan status: None -> Requested -> Approved -> Disbursed -> Secured (mortgage registered at settlement)
///                                 \-> Rejected             \-> Returned (deal defaulted/refunded, loan credited back)
/// SETTLEMENT_ROLE (granted to the DealEscrow) records Secured and Returned.
contract LoanBook is AccessControl, BatchItems {
    using SafeERC20 for IERC20;

    /// @notice Banks that lend.
    bytes32 public constant LENDER_ROLE = keccak256("LENDER_ROLE");
    /// @notice The DealEscrow, which records settlement outcomes.
    bytes32 public constant SETTLEMENT_ROLE = keccak256("SETTLEMENT_ROLE");
    /// @notice Maximum number of credential hashes in one request.
    uint256 public constant MAX_CREDENTIALS = 8;

    /// @notice Loan status.
    enum Status {
        None,
        Requested,
        Approved,
        Rejected,
        Disbursed,
        Secured,
        Returned
    }

    /// @notice One loan per deal. The requested amount is the deal's loanAmount (see the escrow's terms).
    struct Loan {
        address lender;
        Status status;
        uint16 rateBps;
        uint16 termMonths;
        uint16 rejectReason;
        uint24 mortgageEntry; // 을구 index of the mortgage registered at settlement (status Secured)
        uint96 approvedAmount;
        uint96 maxSecured;
    }

    /// @dev Stored form of a Loan, one slot. The lender is not stored: it is the deal's lender in the escrow
    /// (requestLoan requires them equal, and a deal's lender never changes). `rateOrReason` holds the
    /// rateBps of an approved loan or the rejectReason of a rejected one (the other is 0).
    struct LoanRecord {
        Status status;
        uint16 rateOrReason;
        uint16 termMonths;
        uint24 mortgageEntry;
        uint96 approvedAmount;
        uint96 maxSecured;
    }

    /// @notice A creditor's payoff statement for one mortgage entry in one deal.
    struct Payoff {
        address creditor;
        uint96 amount;
    }

    /// @notice One item of {recordLoanDecisions}: with `approve`, {approveLoan}(dealId, amount, rateBps,
    /// termMonths, maxSecured); without, {rejectLoan}(dealId, reasonCode). The other case's fields are ignored.
    struct LoanDecision {
        uint256 dealId;
        bool approve;
        uint256 amount;
        uint16 rateBps;
        uint16 termMonths;
        uint256 maxSecured;
        uint16 reasonCode;
    }

    /// @notice One item of {requestLoans}: {requestLoan}(dealId, amount, lender, credentials).
    struct LoanRequest {
        uint256 dealId;
        uint256 amount;
        address lender;
        bytes32[] credentials;
    }

    DealEscrow private immutable _escrow;
    LandRegister private immutable _land;
    IERC20 private immutable _token;
    mapping(uint256 dealId => LoanRecord) private _loans;
    mapping(uint256 dealId => mapping(uint256 entryIndex => Payoff)) private _payoffs;

    /// @notice `caller` is neither the buyer of the deal nor its broker.
    error NotDealBuyer(uint256 dealId, address caller);
    /// @notice The deal names `expected` as lender, not `lender`.
    error LenderMismatch(uint256 dealId, address expected, address lender);
    /// @notice The deal's loanAmount is `expected`, not `amount`.
    error AmountMismatch(uint256 dealId, uint256 expected, uint256 amount);
    /// @notice The deal is in a state (`state`) where a loan cannot be requested or a payoff stated.
    error DealNotAcceptingLoan(uint256 dealId, DealEscrow.State state);
    /// @notice A loan was already requested for this deal.
    error LoanAlreadyRequested(uint256 dealId);
    /// @notice No loan was requested for this deal.
    error UnknownLoan(uint256 dealId);
    /// @notice `caller` is not the lender of this loan.
    error NotLoanLender(uint256 dealId, address caller);
    /// @notice The loan was already decided (`status`).
    error LoanAlreadyDecided(uint256 dealId, Status status);
    /// @notice The loan is `actual`, the call needs `expected`.
    error LoanNotInStatus(uint256 dealId, Status expected, Status actual);
    /// @notice Approval terms invalid: amount 0, rate over 100%, term 0, or maxSecured below amount / over 96 bits.
    error InvalidLoanTerms(uint256 amount, uint16 rateBps, uint16 termMonths, uint256 maxSecured);
    /// @notice More than MAX_CREDENTIALS credential hashes.
    error TooManyCredentials(uint256 count, uint256 max);
    /// @notice 을구 entry `entryIndex` of the deal's parcel is not an active mortgage.
    error NotActiveMortgage(uint256 dealId, uint256 entryIndex);
    /// @notice `caller` is not the creditor of mortgage entry `entryIndex`.
    error NotMortgageCreditor(uint256 dealId, uint256 entryIndex, address caller);
    /// @notice The amount does not fit in 96 bits.
    error AmountTooLarge(uint256 amount);
    /// @notice An address argument was zero.
    error ZeroAddress();

    /// @notice `buyer` requested `amount` from `lender`, presenting `credentials`.
    event LoanRequested(
        uint256 indexed dealId, address indexed buyer, address indexed lender, uint256 amount, bytes32[] credentials
    );
    /// @notice `lender` approved `amount` at `rateBps` for `termMonths` with 채권최고액 `maxSecured`.
    event LoanApproved(
        uint256 indexed dealId,
        address indexed lender,
        uint256 amount,
        uint16 rateBps,
        uint16 termMonths,
        uint256 maxSecured
    );
    /// @notice `lender` rejected the loan with `reasonCode`.
    event LoanRejected(uint256 indexed dealId, address indexed lender, uint16 reasonCode);
    /// @notice `lender` transferred `amount` to the escrow for the deal.
    event LoanDisbursed(uint256 indexed dealId, address indexed lender, uint256 amount);
    /// @notice Settlement registered the lender's mortgage as 을구 entry `mortgageEntry`.
    event LoanSecured(uint256 indexed dealId, uint256 mortgageEntry);
    /// @notice The deal ended without settlement; the disbursed loan was credited back to the lender.
    event LoanReturned(uint256 indexed dealId);
    /// @notice `creditor` stated `amount` as the payoff of mortgage entry `entryIndex` for the deal.
    event PayoffStated(uint256 indexed dealId, uint256 indexed entryIndex, address indexed creditor, uint256 amount);

    /// @param admin receives DEFAULT_ADMIN_ROLE (grants LENDER_ROLE, and SETTLEMENT_ROLE to the escrow).
    /// @param escrow_ the DealEscrow (its token is the loan currency).
    /// @param landRegister_ the LandRegister (mortgage creditors).
    constructor(address admin, DealEscrow escrow_, LandRegister landRegister_) {
        if (address(escrow_) == address(0) || address(landRegister_) == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _escrow = escrow_;
        _land = landRegister_;
        _token = escrow_.token();
    }

    /// @notice The buyer (or the deal's broker, for it) requests the loan named in the deal's terms.
    /// @param amount must equal the deal's loanAmount.
    /// @param lender must equal the deal's lender.
    /// @param credentials hashes of e-certificates anchored in the CredentialRegistry (emitted, not stored).
    function requestLoan(uint256 dealId, uint256 amount, address lender, bytes32[] calldata credentials) external {
        _requestLoan(msg.sender, dealId, amount, lender, credentials);
    }

    /// @notice Buyers or their brokers: {requestLoan} for several deals; a failing item emits {ItemFailed} and
    /// the others apply. Each item is checked against the caller as its single call would be.
    function requestLoans(LoanRequest[] calldata requests) external {
        for (uint256 i; i < requests.length; ++i) {
            LoanRequest calldata r = requests[i];
            _tryItem(r.dealId, abi.encodeCall(this.requestLoanItem, (msg.sender, r)));
        }
    }

    /// @notice Batch item of {requestLoans}; only this contract may call it.
    function requestLoanItem(address caller, LoanRequest calldata r) external {
        _onlySelf();
        _requestLoan(caller, r.dealId, r.amount, r.lender, r.credentials);
    }

    function _requestLoan(
        address caller,
        uint256 dealId,
        uint256 amount,
        address lender,
        bytes32[] calldata credentials
    ) private {
        if (credentials.length > MAX_CREDENTIALS) revert TooManyCredentials(credentials.length, MAX_CREDENTIALS);
        (, address buyer, address dealLender, uint256 loanAmount, DealEscrow.State s) = _escrow.loanContext(dealId);
        // The buyer signed the terms naming this loan and lender; its broker may file the request for it.
        if (caller != buyer && caller != _escrow.broker(dealId)) revert NotDealBuyer(dealId, caller);
        if (lender != dealLender || lender == address(0)) revert LenderMismatch(dealId, dealLender, lender);
        if (amount != loanAmount) revert AmountMismatch(dealId, loanAmount, amount);
        if (s < DealEscrow.State.Signed || s > DealEscrow.State.InterimPaid) revert DealNotAcceptingLoan(dealId, s);
        LoanRecord storage l = _loans[dealId];
        if (l.status != Status.None) revert LoanAlreadyRequested(dealId);
        l.status = Status.Requested;
        emit LoanRequested(dealId, buyer, lender, amount, credentials);
    }

    /// @notice The named lender approves `amount` (<= requested).
    /// @param rateBps annual interest rate in basis points (<= 10000).
    /// @param termMonths loan term in months (> 0).
    /// @param maxSecured 채권최고액 of the mortgage to register at settlement (>= amount).
    function approveLoan(uint256 dealId, uint256 amount, uint16 rateBps, uint16 termMonths, uint256 maxSecured)
        external
        onlyRole(LENDER_ROLE)
    {
        _approveLoan(msg.sender, dealId, amount, rateBps, termMonths, maxSecured);
    }

    /// @notice The named lender rejects the loan; the buyer then owes the whole balance.
    function rejectLoan(uint256 dealId, uint16 reasonCode) external onlyRole(LENDER_ROLE) {
        _rejectLoan(msg.sender, dealId, reasonCode);
    }

    /// @notice Lender: approve or reject several loans (see {LoanDecision}); a failing item emits
    /// {ItemFailed} and the others apply.
    function recordLoanDecisions(LoanDecision[] calldata decisions) external onlyRole(LENDER_ROLE) {
        for (uint256 i; i < decisions.length; ++i) {
            LoanDecision calldata d = decisions[i];
            _tryItem(d.dealId, abi.encodeCall(this.recordLoanDecisionItem, (msg.sender, d)));
        }
    }

    /// @notice Batch item of {recordLoanDecisions}; only this contract may call it.
    function recordLoanDecisionItem(address lender, LoanDecision calldata d) external {
        _onlySelf();
        if (d.approve) _approveLoan(lender, d.dealId, d.amount, d.rateBps, d.termMonths, d.maxSecured);
        else _rejectLoan(lender, d.dealId, d.reasonCode);
    }

    function _approveLoan(
        address lender,
        uint256 dealId,
        uint256 amount,
        uint16 rateBps,
        uint16 termMonths,
        uint256 maxSecured
    ) private {
        LoanRecord storage l = _undecided(lender, dealId);
        if (amount == 0 || rateBps > 10000 || termMonths == 0 || maxSecured < amount || maxSecured > type(uint96).max)
        {
            revert InvalidLoanTerms(amount, rateBps, termMonths, maxSecured);
        }
        l.status = Status.Approved;
        l.rateOrReason = rateBps;
        l.termMonths = termMonths;
        l.approvedAmount = uint96(amount);
        l.maxSecured = uint96(maxSecured);
        emit LoanApproved(dealId, lender, amount, rateBps, termMonths, maxSecured);
        _escrow.recordLoanDecision(dealId, amount);
    }

    function _rejectLoan(address lender, uint256 dealId, uint16 reasonCode) private {
        LoanRecord storage l = _undecided(lender, dealId);
        l.status = Status.Rejected;
        l.rateOrReason = reasonCode;
        emit LoanRejected(dealId, lender, reasonCode);
        _escrow.recordLoanDecision(dealId, 0);
    }

    /// @notice The approving lender disburses: pulls the approved amount from the lender (who approved this
    /// contract) into the escrow and credits the deal. Needs deposit and interim paid.
    function disburse(uint256 dealId) external onlyRole(LENDER_ROLE) {
        _disburse(msg.sender, dealId);
    }

    /// @notice Lender: {disburse} several loans (the lender approved this contract for their sum); a failing
    /// item emits {ItemFailed} and the others apply.
    function disburseMany(uint256[] calldata dealIds) external onlyRole(LENDER_ROLE) {
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(dealIds[i], abi.encodeCall(this.disburseItem, (msg.sender, dealIds[i])));
        }
    }

    /// @notice Batch item of {disburseMany}; only this contract may call it.
    function disburseItem(address lender, uint256 dealId) external {
        _onlySelf();
        _disburse(lender, dealId);
    }

    function _disburse(address lender, uint256 dealId) private {
        LoanRecord storage l = _loans[dealId];
        Status status = l.status;
        if (status == Status.None) revert UnknownLoan(dealId);
        if (_lender(dealId) != lender) revert NotLoanLender(dealId, lender);
        if (status != Status.Approved) revert LoanNotInStatus(dealId, Status.Approved, status);
        uint256 amount = l.approvedAmount;
        l.status = Status.Disbursed;
        emit LoanDisbursed(dealId, lender, amount);
        _token.safeTransferFrom(lender, address(_escrow), amount);
        _escrow.creditLoan(dealId, amount);
    }

    /// @notice The creditor of active mortgage entry `mortgageEntryIndex` on the deal's parcel states the payoff
    /// (amount that discharges it) for this deal. Restating replaces the previous statement.
    function statePayoff(uint256 dealId, uint256 mortgageEntryIndex, uint256 amount) external {
        _statePayoff(msg.sender, dealId, mortgageEntryIndex, amount);
    }

    /// @notice {statePayoff} for several (deal, mortgage entry) pairs, each by the rule of the single call
    /// (the caller must be the entry's creditor). A failing item emits {ItemFailed} and the others apply.
    function statePayoffs(
        uint256[] calldata dealIds,
        uint256[] calldata mortgageEntryIndexes,
        uint256[] calldata amounts
    ) external {
        _sameLength(dealIds.length, mortgageEntryIndexes.length);
        _sameLength(dealIds.length, amounts.length);
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(
                dealIds[i],
                abi.encodeCall(this.statePayoffItem, (msg.sender, dealIds[i], mortgageEntryIndexes[i], amounts[i]))
            );
        }
    }

    /// @notice Batch item of {statePayoffs}; only this contract may call it.
    function statePayoffItem(address creditor, uint256 dealId, uint256 mortgageEntryIndex, uint256 amount)
        external
    {
        _onlySelf();
        _statePayoff(creditor, dealId, mortgageEntryIndex, amount);
    }

    function _statePayoff(address caller, uint256 dealId, uint256 mortgageEntryIndex, uint256 amount) private {
        (bytes32 parcelId,,,, DealEscrow.State s) = _escrow.loanContext(dealId);
        if (s >= DealEscrow.State.Settled) revert DealNotAcceptingLoan(dealId, s);
        address creditor = _land.activeMortgageCreditor(parcelId, mortgageEntryIndex);
        if (creditor == address(0)) revert NotActiveMortgage(dealId, mortgageEntryIndex);
        if (creditor != caller) revert NotMortgageCreditor(dealId, mortgageEntryIndex, caller);
        if (amount > type(uint96).max) revert AmountTooLarge(amount);
        _payoffs[dealId][mortgageEntryIndex] = Payoff(caller, uint96(amount));
        emit PayoffStated(dealId, mortgageEntryIndex, caller, amount);
    }

    /// @notice Settlement: the lender's mortgage was registered as 을구 entry `mortgageEntry`.
    function recordSecured(uint256 dealId, uint256 mortgageEntry) external onlyRole(SETTLEMENT_ROLE) {
        LoanRecord storage l = _disbursed(dealId);
        l.status = Status.Secured;
        l.mortgageEntry = uint24(mortgageEntry);
        emit LoanSecured(dealId, mortgageEntry);
    }

    /// @notice Settlement: the deal ended unsettled and the disbursed loan was credited back to the lender.
    function recordReturned(uint256 dealId) external onlyRole(SETTLEMENT_ROLE) {
        LoanRecord storage l = _disbursed(dealId);
        l.status = Status.Returned;
        emit LoanReturned(dealId);
    }

    /// @notice The loan record of a deal (status None if never requested).
    function loan(uint256 dealId) external view returns (Loan memory) {
        LoanRecord storage l = _loans[dealId];
        Status status = l.status;
        if (status == Status.None) return Loan(address(0), Status.None, 0, 0, 0, 0, 0, 0);
        bool rejected = status == Status.Rejected;
        uint16 rateOrReason = l.rateOrReason;
        return Loan({
            lender: _lender(dealId),
            status: status,
            rateBps: rejected ? 0 : rateOrReason,
            termMonths: l.termMonths,
            rejectReason: rejected ? rateOrReason : 0,
            mortgageEntry: l.mortgageEntry,
            approvedAmount: l.approvedAmount,
            maxSecured: l.maxSecured
        });
    }

    /// @notice The payoff stated for mortgage entry `entryIndex` in deal `dealId` (creditor 0 = not stated).
    function payoff(uint256 dealId, uint256 entryIndex) external view returns (address creditor, uint256 amount) {
        Payoff storage p = _payoffs[dealId][entryIndex];
        return (p.creditor, p.amount);
    }

    /// @notice The DealEscrow.
    function escrow() external view returns (DealEscrow) {
        return _escrow;
    }

    /// @notice The LandRegister.
    function landRegister() external view returns (LandRegister) {
        return _land;
    }

    /// @notice The loan currency (the escrow's DepositToken).
    function token() external view returns (IERC20) {
        return _token;
    }

    function _undecided(address lender, uint256 dealId) private view returns (LoanRecord storage l) {
        l = _loans[dealId];
        Status status = l.status;
        if (status == Status.None) revert UnknownLoan(dealId);
        if (_lender(dealId) != lender) revert NotLoanLender(dealId, lender);
        if (status != Status.Requested) revert LoanAlreadyDecided(dealId, status);
    }

    /// @dev The lender of a requested loan: the deal's lender (the deal exists once a loan was requested).
    function _lender(uint256 dealId) private view returns (address lender) {
        (,, lender,,) = _escrow.loanContext(dealId);
    }

    function _disbursed(uint256 dealId) private view returns (LoanRecord storage l) {
        l = _loans[dealId];
        if (l.status != Status.Disbursed) revert LoanNotInStatus(dealId, Status.Disbursed, l.status);
    }
}
