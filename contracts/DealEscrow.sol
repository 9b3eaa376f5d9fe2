// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {LandRegister} from "./LandRegister.sol";
import {LoanBook} from "./LoanBook.sol";
import {BatchItems} from "./BatchItems.sol";

/// @title Real-estate closing escrow (매매 계약금·중도금·잔금 에스크로)
/// @notice A BROKER opens a deal; buyer and seller accept the full terms by EIP-712 signature; the buyer
/// pays deposit (계약금), interim (중도금, optional) and its part of the balance (잔금) in DepositToken;
/// the buyer's lender disburses the loan through the LoanBook; the REGISTRAR settles in one transaction
/// (payoff + discharge of the seller's mortgages, ownership to the buyer, the lender's new mortgage).
///
/// State machine (terminal states: Settled, Cancelled, Defaulted, Refunded):
/// | from                          | action                                              | to                       |
/// |-------------------------------|-----------------------------------------------------|--------------------------|
/// | -                             | openDeal (BROKER)                                   | Open                     |
/// | Open                          | acceptTerms by buyer and by seller                  | Signed                   |
/// | Signed                        | payDeposit                                          | DepositPaid (*)          |
/// | DepositPaid (interim > 0)     | payInterim                                          | InterimPaid (*)          |
/// | Signed..InterimPaid           | LoanBook records approval (amount > 0)              | unchanged, or LoanApproved once deposit+interim are paid |
/// | DepositPaid/InterimPaid/LoanApproved | payBalance (buyer part) / loan disbursement  | Funded when both done    |
/// | Funded                        | requestRegistration (buyer, seller, broker)          | RegistrationRequested    |
/// | RegistrationRequested         | settle (REGISTRAR)                                  | Settled                  |
/// | DepositPaid.., no performance | cancel by buyer (forfeits deposit) / seller (pays back double) | Cancelled (§565) |
/// | Open/Signed, deposit deadline passed | declareDefault                               | Cancelled (nothing moves)|
/// | deposit paid, a later deadline passed unfunded | declareDefault                     | Defaulted                |
/// | any non-terminal              | refund (REGISTRAR)                                  | Refunded                 |
/// (*) the stored state is always the furthest stage reached: "DepositPaid" = deposit paid and interim
/// unpaid (or no interim); "InterimPaid" = interim paid; "LoanApproved" = deposit/interim paid, loan
/// approved, not yet funded. A deal without interim goes Signed -> DepositPaid -> (LoanApproved) -> Funded.
/// A rejected loan (approved amount 0) makes the buyer liable for the whole balance.
///
/// Performance has begun (ending the §565 right to cancel) once the interim, the buyer's balance part or the
/// loan has been paid. Payments are pulled with SafeERC20 (payer approves this contract); money leaving a
/// deal is credited to `claimable` and withdrawn with {withdraw}. Invariant: token balance of this contract
/// = sum of {heldBy} over live deals + {totalClaimable} (ignoring tokens sent here directly).
contract DealEscrow is AccessControl, EIP712, Nonces, ReentrancyGuard, BatchItems {
    using SafeERC20 for IERC20;

    /// @notice Licensed brokers who open deals.
    bytes32 public constant BROKER_ROLE = keccak256("BROKER_ROLE");
    /// @notice The land registry, which settles or refunds deals.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice EIP-712 typehash of the terms each party signs.
    bytes32 public constant ACCEPT_TERMS_TYPEHASH = keccak256(
        "AcceptTerms(uint256 dealId,bytes32 parcelId,address seller,address buyer,uint256 price,uint256 deposit,uint256 interim,uint256 balance,uint64 depositDeadline,uint64 interimDeadline,uint64 balanceDeadline,uint256 loanAmount,address lender,uint256 nonce,uint64 expiry)"
    );

    /// @notice Deal state; see the contract NatSpec for the transitions.
    enum State {
        None,
        Open,
        Signed,
        DepositPaid,
        InterimPaid,
        LoanApproved,
        Funded,
        RegistrationRequested,
        Settled,
        Cancelled,
        Defaulted,
        Refunded
    }

    /// @notice A contracting party.
    enum Party {
        Buyer,
        Seller
    }

    /// @notice A payment of the deal.
    enum Payment {
        Deposit,
        Interim,
        Balance,
        Loan
    }

    /// @notice The terms of a deal as opened by the broker and signed by both parties.
    /// @dev price = deposit + interim + balance; interim = 0 means no interim (then interimDeadline = 0);
    /// loanAmount = 0 means no loan (then lender = address(0)).
    struct DealTerms {
        bytes32 parcelId;
        address seller;
        address buyer;
        uint256 price;
        uint256 deposit;
        uint256 interim;
        uint256 balance;
        uint64 depositDeadline;
        uint64 interimDeadline;
        uint64 balanceDeadline;
        uint256 loanAmount;
        address lender;
    }

    struct Deal {
        bytes32 parcelId;
        address seller;
        uint96 deposit;
        address buyer;
        uint96 interim;
        address lender;
        uint96 balance;
        uint96 loanAmount;
        uint40 depositDeadline;
        uint40 interimDeadline;
        uint40 balanceDeadline;
        State state;
        uint8 flags;
        address broker;
        uint96 approvedLoan;
    }

    uint8 private constant BUYER_SIGNED = 1;
    uint8 private constant SELLER_SIGNED = 2;
    uint8 private constant DEPOSIT_PAID = 4;
    uint8 private constant INTERIM_PAID = 8;
    uint8 private constant BALANCE_PAID = 16;
    uint8 private constant LOAN_DECIDED = 32;
    uint8 private constant LOAN_DISBURSED = 64;
    uint8 private constant REPORTED = 128;

    IERC20 private immutable _token;
    LandRegister private immutable _land;
    LoanBook private _loanBook;
    uint256 private _nextDealId = 1;
    uint256 private _totalClaimable;
    mapping(uint256 dealId => Deal) private _deals;
    mapping(address account => uint256) private _claimable;
    mapping(bytes32 parcelId => uint256 dealId) private _contractedDeal;

    /// @notice Registration must follow the balance within this window (등기 within 60 days of 잔금); after it
    /// anyone may have a funded but unsettled deal refunded, so no money waits on the registrar forever.
    uint256 public constant REGISTRATION_WINDOW = 60 days;
    /// @notice Reason code of a refund because the registration window passed.
    uint16 public constant REASON_REGISTRATION_WINDOW = type(uint16).max;
    /// @notice EIP-712 typehash of a party's signed §565 cancellation.
    bytes32 public constant CANCEL_TYPEHASH =
        keccak256("CancelDeal(uint256 dealId,uint8 party,uint256 nonce,uint64 expiry)");

    // ------------------------------------------------------------------ errors

    /// @notice No deal has id `dealId`.
    error UnknownDeal(uint256 dealId);
    /// @notice The deal is in `actual` but the call needs `expected`.
    error DealNotInState(uint256 dealId, State expected, State actual);
    /// @notice The deal is in state `actual`, where this call is not possible (finished, or funded).
    error DealNotActive(uint256 dealId, State actual);
    /// @notice Seller and buyer must be distinct non-zero addresses.
    error InvalidParties(address seller, address buyer);
    /// @notice Deposit and balance must be non-zero.
    error InvalidAmounts(uint256 deposit, uint256 interim, uint256 balance);
    /// @notice An amount does not fit in 96 bits.
    error AmountTooLarge(uint256 amount);
    /// @notice price != deposit + interim + balance.
    error PriceMismatch(uint256 price, uint256 sum);
    /// @notice The loan exceeds the balance it finances.
    error LoanExceedsBalance(uint256 loanAmount, uint256 balance);
    /// @notice A loan needs a lender and a lender needs a loan.
    error LenderMismatch(uint256 loanAmount, address lender);
    /// @notice Deadlines must be in the future and increasing; interimDeadline is 0 iff interim is 0.
    error InvalidDeadlines(uint64 depositDeadline, uint64 interimDeadline, uint64 balanceDeadline);
    /// @notice `seller` is not the current owner `owner` of the parcel.
    error SellerNotOwner(bytes32 parcelId, address seller, address owner);
    /// @notice The signature expired at `expiry`.
    error SignatureExpired(uint256 dealId, uint64 expiry, uint256 nowTime);
    /// @notice `party` already accepted the terms.
    error AlreadyAccepted(uint256 dealId, Party party);
    /// @notice The signature recovers to `recovered`, not `expected` (wrong signer, deal, chain, nonce or terms).
    error InvalidSigner(uint256 dealId, address expected, address recovered);
    /// @notice The payment deadline `deadline` has passed.
    error DeadlinePassed(uint256 dealId, uint64 deadline, uint256 nowTime);
    /// @notice `payment` was already made.
    error AlreadyPaid(uint256 dealId, Payment payment);
    /// @notice `payment` is not part of this deal (e.g. interim when there is none, balance part 0).
    error PaymentNotDue(uint256 dealId, Payment payment);
    /// @notice The deal has a loan that the lender has not decided yet.
    error LoanNotDecided(uint256 dealId);
    /// @notice The deal has no loan, or its loan was already decided.
    error LoanDecisionNotExpected(uint256 dealId);
    /// @notice The lender approved `approved`, more than the `loanAmount` in the terms.
    error LoanExceedsTerms(uint256 dealId, uint256 approved, uint256 loanAmount);
    /// @notice Disbursed `amount` differs from the approved `expected`.
    error LoanAmountMismatch(uint256 dealId, uint256 expected, uint256 amount);
    /// @notice `caller` is not a party (or broker) of the deal.
    error NotParty(uint256 dealId, address caller);
    /// @notice Performance began (interim, balance or loan paid): §565 cancellation is no longer possible.
    error PerformanceBegun(uint256 dealId);
    /// @notice No deadline has passed unpaid; the next one is `deadline`.
    error NoDeadlineMissed(uint256 dealId, uint64 deadline);
    /// @notice The parcel has `activeBlockings` active blocking entries.
    error ParcelBlocked(uint256 dealId, bytes32 parcelId, uint256 activeBlockings);
    /// @notice The creditor of mortgage entry `entryIndex` has not stated a payoff for this deal.
    error PayoffNotStated(uint256 dealId, uint256 entryIndex);
    /// @notice The parcel is already under a signed contract in live deal `liveDealId` (no double sale, 이중매매).
    error ParcelUnderContract(bytes32 parcelId, uint256 liveDealId);
    /// @notice Settlement needs the transaction report (실거래 신고) recorded first.
    error TransactionNotReported(uint256 dealId);
    /// @notice The price does not cover the stated payoffs.
    error ProceedsShort(uint256 dealId, uint256 price, uint256 payoffTotal);
    /// @notice Only the LoanBook may call; `caller` is not it.
    error NotLoanBook(address caller);
    /// @notice The LoanBook is already set to `loanBook`.
    error LoanBookAlreadySet(address loanBook);
    /// @notice The LoanBook is not set yet.
    error LoanBookNotSet();
    /// @notice An address argument was zero.
    error ZeroAddress();
    /// @notice `account` has nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice The transaction report (실거래 신고) of the deal was already recorded.
    error AlreadyReported(uint256 dealId);

    // ------------------------------------------------------------------ events

    /// @notice The admin linked the LoanBook.
    event LoanBookSet(address indexed loanBook);
    /// @notice `broker` opened deal `dealId` with `terms` (state Open).
    event DealOpened(uint256 indexed dealId, bytes32 indexed parcelId, address indexed broker, DealTerms terms);
    /// @notice `party` (`signer`) accepted the terms using `nonce`; `state` is the deal's new state.
    event TermsAccepted(uint256 indexed dealId, Party party, address indexed signer, uint256 nonce, State state);
    /// @notice `payer` paid `payment` of `amount` into the deal; `state` is the deal's new state.
    event PaymentReceived(uint256 indexed dealId, Payment payment, address indexed payer, uint256 amount, State state);
    /// @notice The lender's decision: `approvedAmount` (0 = rejected); `state` is the deal's new state.
    event LoanDecisionRecorded(uint256 indexed dealId, address indexed lender, uint256 approvedAmount, State state);
    /// @notice `requester` asked the registrar to register the transfer.
    event RegistrationRequested(uint256 indexed dealId, address indexed requester);
    /// @notice The deal was cancelled under Civil Code §565 by `party`; credits to buyer and seller.
    event DealCancelled(
        uint256 indexed dealId, Party party, address indexed by, uint256 toBuyer, uint256 toSeller
    );
    /// @notice `caller` declared `missed` past its deadline; `state` is Cancelled (nothing paid) or Defaulted,
    /// with the amounts credited to seller (liquidated damages), buyer and lender.
    event DealDefaulted(
        uint256 indexed dealId,
        address indexed caller,
        Payment missed,
        State state,
        uint256 toSeller,
        uint256 toBuyer,
        uint256 toLender
    );
    /// @notice The registrar refunded the deal for `reasonCode`; credits to buyer and lender.
    event DealRefunded(uint256 indexed dealId, uint16 reasonCode, uint256 toBuyer, uint256 toLender);
    /// @notice Mortgage entry `entryIndex` was paid off with `amount` credited to `creditor`.
    event PayoffPaid(uint256 indexed dealId, uint256 entryIndex, address indexed creditor, uint256 amount);
    /// @notice The deal settled: payoffs `payoffTotal`, `sellerProceeds` credited to the seller.
    event DealSettled(
        uint256 indexed dealId,
        bytes32 indexed parcelId,
        bytes32 registrationReceipt,
        bytes32 taxReceipt,
        uint256 payoffTotal,
        uint256 sellerProceeds
    );
    /// @notice `account` withdrew `amount` of its claimable balance.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice The registry accepted the deal's transaction report (실거래 신고) under `receipt`.
    event TransactionReported(uint256 indexed dealId, bytes32 receipt);

    // ------------------------------------------------------------------ constructor / wiring

    /// @param admin receives DEFAULT_ADMIN_ROLE (grants BROKER_ROLE, REGISTRAR_ROLE, sets the LoanBook).
    /// @param token_ the DepositToken (KRWD).
    /// @param landRegister_ the LandRegister (this contract needs its SETTLEMENT_ROLE).
    constructor(address admin, IERC20 token_, LandRegister landRegister_) EIP712("DealEscrow", "1") {
        if (address(token_) == address(0) || address(landRegister_) == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _token = token_;
        _land = landRegister_;
    }

    /// @notice Link the LoanBook (once; it is deployed after this contract).
    function setLoanBook(LoanBook loanBook_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(loanBook_) == address(0)) revert ZeroAddress();
        if (address(_loanBook) != address(0)) revert LoanBookAlreadySet(address(_loanBook));
        _loanBook = loanBook_;
        emit LoanBookSet(address(loanBook_));
    }

    // ------------------------------------------------------------------ opening and signing

    /// @notice Open a deal on a parcel the seller currently owns.
    /// @param t the full terms (see {DealTerms}).
    /// @return dealId the new deal's id (sequential from 1).
    function openDeal(DealTerms calldata t) external onlyRole(BROKER_ROLE) returns (uint256 dealId) {
        dealId = _open(t);
    }

    /// @notice Open a deal already accepted by both parties: one transaction instead of three. Each
    /// signature is an AcceptTerms over the full terms with dealId 0 (the id is not known when a
    /// draft is signed) and the signer's current nonce, which this call uses up, so it opens once.
    /// Emits DealOpened and both TermsAccepted; the deal is Signed.
    function openSignedDeal(DealTerms calldata t, uint64 buyerExpiry, bytes calldata buyerSignature,
        uint64 sellerExpiry, bytes calldata sellerSignature) external onlyRole(BROKER_ROLE) returns (uint256 dealId)
    {
        dealId = _open(t);
        _accept(dealId, 0, Party.Buyer, buyerExpiry, buyerSignature);
        _accept(dealId, 0, Party.Seller, sellerExpiry, sellerSignature);
    }

    function _open(DealTerms calldata t) private returns (uint256 dealId) {
        if (t.seller == address(0) || t.buyer == address(0) || t.seller == t.buyer) {
            revert InvalidParties(t.seller, t.buyer);
        }
        if (t.deposit == 0 || t.balance == 0) revert InvalidAmounts(t.deposit, t.interim, t.balance);
        uint96 price = _toUint96(t.price);
        uint96 deposit = _toUint96(t.deposit);
        uint96 interim = _toUint96(t.interim);
        uint96 balance = _toUint96(t.balance);
        uint256 sum = uint256(deposit) + interim + balance;
        if (sum != price) revert PriceMismatch(price, sum);
        if (t.loanAmount > balance) revert LoanExceedsBalance(t.loanAmount, balance);
        if ((t.loanAmount == 0) != (t.lender == address(0))) revert LenderMismatch(t.loanAmount, t.lender);
        _checkDeadlines(t.depositDeadline, t.interimDeadline, t.balanceDeadline, interim);
        address owner = _land.ownerOf(t.parcelId);
        if (owner != t.seller) revert SellerNotOwner(t.parcelId, t.seller, owner);

        dealId = _nextDealId++;
        Deal storage d = _deals[dealId];
        d.parcelId = t.parcelId;
        d.seller = t.seller;
        d.deposit = deposit;
        d.buyer = t.buyer;
        d.interim = interim;
        d.lender = t.lender;
        d.balance = balance;
        d.loanAmount = uint96(t.loanAmount);
        d.depositDeadline = uint40(t.depositDeadline);
        d.interimDeadline = uint40(t.interimDeadline);
        d.balanceDeadline = uint40(t.balanceDeadline);
        d.state = State.Open;
        d.broker = msg.sender;
        emit DealOpened(dealId, t.parcelId, msg.sender, t);
    }

    /// @notice Submit a party's EIP-712 acceptance of the full terms (anyone may submit it).
    /// @param party which party signed.
    /// @param expiry the signature expiry that was signed.
    /// @param signature 65-byte ECDSA signature over AcceptTerms with the signer's current nonce.
    function acceptTerms(uint256 dealId, Party party, uint64 expiry, bytes calldata signature) external {
        _accept(dealId, dealId, party, expiry, signature);
    }

    /// @dev `signedDealId`: the deal id in the signed AcceptTerms (0 for a draft's, see {openSignedDeal}).
    function _accept(uint256 dealId, uint256 signedDealId, Party party, uint64 expiry, bytes calldata signature)
        private
    {
        Deal storage d = _deal(dealId);
        if (d.state != State.Open) revert DealNotInState(dealId, State.Open, d.state);
        if (block.timestamp > expiry) revert SignatureExpired(dealId, expiry, block.timestamp);
        uint8 bit = party == Party.Buyer ? BUYER_SIGNED : SELLER_SIGNED;
        uint8 flags = d.flags;
        if (flags & bit != 0) revert AlreadyAccepted(dealId, party);
        address signer = party == Party.Buyer ? d.buyer : d.seller;
        uint256 nonce = _useNonce(signer);
        _checkSigner(dealId, _acceptTermsHash(d, signedDealId, nonce, expiry), signer, signature);
        flags |= bit;
        d.flags = flags;
        State s = State.Open;
        if (flags & (BUYER_SIGNED | SELLER_SIGNED) == (BUYER_SIGNED | SELLER_SIGNED)) {
            // Only one signed contract per parcel at a time (no double sale). Unsigned offers do not
            // lock the parcel, so a broker alone cannot block it.
            bytes32 parcelId = d.parcelId;
            uint256 live = _contractedDeal[parcelId];
            if (live != 0 && _deals[live].state < State.Settled) revert ParcelUnderContract(parcelId, live);
            _contractedDeal[parcelId] = dealId;
            s = State.Signed;
            d.state = s;
        }
        emit TermsAccepted(dealId, party, signer, nonce, s);
    }

    // ------------------------------------------------------------------ payments

    /// @notice Pay the deposit (계약금) from the buyer's tokens (the buyer approved or permitted this contract);
    /// the buyer or the deal's broker triggers it, by the deadline.
    function payDeposit(uint256 dealId) external nonReentrant {
        _payDeposit(msg.sender, dealId);
    }

    /// @notice Pay the interim (중도금) from the buyer's tokens, by the interim deadline (buyer or broker).
    function payInterim(uint256 dealId) external nonReentrant {
        _payInterim(msg.sender, dealId);
    }

    /// @notice Pay the buyer's part of the balance (잔금 - approved loan) from the buyer's tokens, by the balance
    /// deadline. Needs deposit and interim paid and, for a loan deal, the lender's decision.
    function payBalance(uint256 dealId) external nonReentrant {
        _payBalance(msg.sender, dealId);
    }

    /// @notice Pull due payments across deals, each by the rule of its single call (the caller must be the
    /// deal's buyer or broker). A failing item emits {ItemFailed} and the others apply.
    /// @param payments the {Payment} of each deal as uint8: Deposit (0), Interim (1) or Balance (2); the loan
    /// (3) is the lender's (LoanBook), an item naming it fails with PaymentNotDue.
    function payMany(uint256[] calldata dealIds, uint8[] calldata payments) external nonReentrant {
        _sameLength(dealIds.length, payments.length);
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(dealIds[i], abi.encodeCall(this.payItem, (msg.sender, dealIds[i], payments[i])));
        }
    }

    /// @notice Batch item of {payMany}; only this contract may call it (it runs inside payMany's guard).
    /// @param payment a {Payment} value; converted here, so an out-of-range value fails this item only (Panic).
    function payItem(address caller, uint256 dealId, uint8 payment) external {
        _onlySelf();
        Payment p = Payment(payment);
        if (p == Payment.Deposit) _payDeposit(caller, dealId);
        else if (p == Payment.Interim) _payInterim(caller, dealId);
        else if (p == Payment.Balance) _payBalance(caller, dealId);
        else revert PaymentNotDue(dealId, p);
    }

    function _payDeposit(address caller, uint256 dealId) private {
        Deal storage d = _deal(dealId);
        if (d.state != State.Signed) revert DealNotInState(dealId, State.Signed, d.state);
        _checkDeadline(dealId, d.depositDeadline);
        uint256 amount = d.deposit;
        _receive(caller, dealId, d, DEPOSIT_PAID, Payment.Deposit, amount);
    }

    function _payInterim(address caller, uint256 dealId) private {
        Deal storage d = _deal(dealId);
        uint256 amount = d.interim;
        if (amount == 0) revert PaymentNotDue(dealId, Payment.Interim);
        if (d.state != State.DepositPaid) revert DealNotInState(dealId, State.DepositPaid, d.state);
        _checkDeadline(dealId, d.interimDeadline);
        _receive(caller, dealId, d, INTERIM_PAID, Payment.Interim, amount);
    }

    function _payBalance(address caller, uint256 dealId) private {
        Deal storage d = _deal(dealId);
        State s = d.state;
        State base = d.interim == 0 ? State.DepositPaid : State.InterimPaid;
        if (s != base && s != State.LoanApproved) {
            revert DealNotInState(dealId, d.loanAmount == 0 ? base : State.LoanApproved, s);
        }
        uint8 flags = d.flags;
        if (d.loanAmount != 0 && flags & LOAN_DECIDED == 0) revert LoanNotDecided(dealId);
        if (flags & BALANCE_PAID != 0) revert AlreadyPaid(dealId, Payment.Balance);
        uint256 amount = d.balance - d.approvedLoan;
        if (amount == 0) revert PaymentNotDue(dealId, Payment.Balance);
        _checkDeadline(dealId, d.balanceDeadline);
        _receive(caller, dealId, d, BALANCE_PAID, Payment.Balance, amount);
    }

    // ------------------------------------------------------------------ LoanBook hooks

    /// @notice LoanBook: record the lender's decision; `approvedAmount` 0 = rejected.
    function recordLoanDecision(uint256 dealId, uint256 approvedAmount) external {
        _onlyLoanBook();
        Deal storage d = _deal(dealId);
        State s = d.state;
        if (s < State.Signed || s > State.InterimPaid) revert DealNotActive(dealId, s);
        uint8 flags = d.flags;
        if (d.loanAmount == 0 || flags & LOAN_DECIDED != 0) revert LoanDecisionNotExpected(dealId);
        if (approvedAmount > d.loanAmount) revert LoanExceedsTerms(dealId, approvedAmount, d.loanAmount);
        d.approvedLoan = uint96(approvedAmount);
        flags |= LOAN_DECIDED;
        d.flags = flags;
        s = _stage(d, flags);
        d.state = s;
        emit LoanDecisionRecorded(dealId, d.lender, approvedAmount, s);
    }

    /// @notice LoanBook: the approved loan `amount` was transferred lender -> escrow for this deal.
    function creditLoan(uint256 dealId, uint256 amount) external {
        _onlyLoanBook();
        Deal storage d = _deal(dealId);
        if (d.state != State.LoanApproved) revert DealNotInState(dealId, State.LoanApproved, d.state);
        if (d.flags & LOAN_DISBURSED != 0) revert AlreadyPaid(dealId, Payment.Loan);
        if (amount != d.approvedLoan) revert LoanAmountMismatch(dealId, d.approvedLoan, amount);
        _checkDeadline(dealId, d.balanceDeadline);
        uint8 flags = d.flags | LOAN_DISBURSED;
        d.flags = flags;
        State s = _stage(d, flags);
        d.state = s;
        emit PaymentReceived(dealId, Payment.Loan, d.lender, amount, s);
    }

    // ------------------------------------------------------------------ cancellation, default, refund

    /// @notice Civil Code §565 cancellation before performance begins, by the buyer (the deposit goes to the
    /// seller) or by the seller (the seller pays in an amount equal to the deposit; the buyer gets both).
    function cancel(uint256 dealId) external nonReentrant {
        Deal storage d = _deal(dealId);
        Party party;
        if (msg.sender == d.buyer) party = Party.Buyer;
        else if (msg.sender == d.seller) party = Party.Seller;
        else revert NotParty(dealId, msg.sender);
        _cancel(dealId, d, party);
    }

    /// @notice The same §565 cancellation, submitted by anyone with the party's EIP-712 signature over
    /// CancelDeal(dealId, party, nonce, expiry); a seller's matching amount is pulled from the seller.
    function cancelWithSignature(uint256 dealId, Party party, uint64 expiry, bytes calldata signature)
        external
        nonReentrant
    {
        Deal storage d = _deal(dealId);
        if (block.timestamp > expiry) revert SignatureExpired(dealId, expiry, block.timestamp);
        address signer = party == Party.Buyer ? d.buyer : d.seller;
        uint256 nonce = _useNonce(signer);
        _checkSigner(dealId, keccak256(abi.encode(CANCEL_TYPEHASH, dealId, uint8(party), nonce, expiry)), signer, signature);
        _cancel(dealId, d, party);
    }

    function _cancel(uint256 dealId, Deal storage d, Party party) private {
        State s = d.state;
        uint8 flags = d.flags;
        if (flags & DEPOSIT_PAID == 0 || s >= State.Settled) revert DealNotInState(dealId, State.DepositPaid, s);
        if (flags & (INTERIM_PAID | BALANCE_PAID | LOAN_DISBURSED) != 0) revert PerformanceBegun(dealId);
        uint256 deposit = d.deposit;
        d.state = State.Cancelled;
        if (party == Party.Buyer) {
            _credit(d.seller, deposit);
            emit DealCancelled(dealId, Party.Buyer, d.buyer, 0, deposit);
        } else {
            address seller = d.seller;
            _credit(d.buyer, 2 * deposit);
            emit DealCancelled(dealId, Party.Seller, seller, 2 * deposit, 0);
            _token.safeTransferFrom(seller, address(this), deposit);
        }
    }

    /// @notice Anyone may declare a missed deadline.
    /// - Deposit missed: Cancelled, nothing moves.
    /// - Interim, or the buyer's part of the balance, missed: Defaulted; the deposit goes to the seller
    ///   (liquidated damages), the rest the buyer paid back to the buyer, a disbursed loan back to the lender.
    /// - The loan missing at the balance deadline (requested but never decided, or approved but not disbursed)
    ///   while the buyer paid its part: the lender failed, not the buyer; Defaulted with no damages.
    /// - Funded but not settled REGISTRATION_WINDOW after the balance deadline: Refunded to every payer.
    function declareDefault(uint256 dealId) external {
        Deal storage d = _deal(dealId);
        State s = d.state;
        if (s >= State.Settled) revert DealNotActive(dealId, s);
        uint8 flags = d.flags;
        if (s >= State.Funded) {
            uint256 closesAt = uint256(d.balanceDeadline) + REGISTRATION_WINDOW;
            if (block.timestamp <= closesAt) revert NoDeadlineMissed(dealId, uint64(closesAt));
            _refund(dealId, d, REASON_REGISTRATION_WINDOW);
            return;
        }
        if (flags & DEPOSIT_PAID == 0) {
            if (block.timestamp <= d.depositDeadline) revert NoDeadlineMissed(dealId, d.depositDeadline);
            d.state = State.Cancelled;
            emit DealDefaulted(dealId, msg.sender, Payment.Deposit, State.Cancelled, 0, 0, 0);
            return;
        }
        Payment missed;
        if (d.interim != 0 && flags & INTERIM_PAID == 0) {
            if (block.timestamp <= d.interimDeadline) revert NoDeadlineMissed(dealId, d.interimDeadline);
            missed = Payment.Interim;
        } else {
            if (block.timestamp <= d.balanceDeadline) revert NoDeadlineMissed(dealId, d.balanceDeadline);
            // a loan never requested is the buyer's omission; requested and never decided is the lender's
            bool loanUndecided = d.loanAmount != 0 && flags & LOAN_DECIDED == 0 && _loanRequested(dealId);
            bool buyerPartUnpaid = flags & BALANCE_PAID == 0 && d.balance != d.approvedLoan;
            missed = (!loanUndecided && buyerPartUnpaid) ? Payment.Balance : Payment.Loan;
        }
        (uint256 buyerPaid, uint256 toLender) = _paidBack(d, flags);
        uint256 toSeller = missed == Payment.Loan ? 0 : d.deposit;
        uint256 toBuyer = buyerPaid - toSeller;
        d.state = State.Defaulted;
        _credit(d.seller, toSeller);
        _credit(d.buyer, toBuyer);
        _credit(d.lender, toLender);
        emit DealDefaulted(dealId, msg.sender, missed, State.Defaulted, toSeller, toBuyer, toLender);
        if (toLender != 0) _loanBook.recordReturned(dealId);
    }

    /// @notice Registrar: settlement became impossible (e.g. title blocked); every payer gets its money back.
    /// @param reasonCode registrar's reason code.
    function refund(uint256 dealId, uint16 reasonCode) external onlyRole(REGISTRAR_ROLE) {
        _refundLive(dealId, reasonCode);
    }

    /// @notice Registrar: {refund} several deals; a failing item emits {ItemFailed} and the others apply.
    function refundMany(uint256[] calldata dealIds, uint16[] calldata reasonCodes)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        _sameLength(dealIds.length, reasonCodes.length);
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(dealIds[i], abi.encodeCall(this.refundItem, (dealIds[i], reasonCodes[i])));
        }
    }

    /// @notice Batch item of {refundMany}; only this contract may call it.
    function refundItem(uint256 dealId, uint16 reasonCode) external {
        _onlySelf();
        _refundLive(dealId, reasonCode);
    }

    function _refundLive(uint256 dealId, uint16 reasonCode) private {
        Deal storage d = _deal(dealId);
        State s = d.state;
        if (s >= State.Settled) revert DealNotActive(dealId, s);
        _refund(dealId, d, reasonCode);
    }

    function _refund(uint256 dealId, Deal storage d, uint16 reasonCode) private {
        (uint256 toBuyer, uint256 toLender) = _paidBack(d, d.flags);
        d.state = State.Refunded;
        _credit(d.buyer, toBuyer);
        _credit(d.lender, toLender);
        emit DealRefunded(dealId, reasonCode, toBuyer, toLender);
        if (toLender != 0) _loanBook.recordReturned(dealId);
    }

    // ------------------------------------------------------------------ registration and settlement

    /// @notice Registrar: record the receipt of the transaction report (실거래 신고), due within 30 days of
    /// the contract; the registry checks the deadline when it accepts the report.
    /// @param receipt the registry's receipt number.
    function recordTransactionReport(uint256 dealId, bytes32 receipt) external onlyRole(REGISTRAR_ROLE) {
        _recordTransactionReport(dealId, receipt);
    }

    /// @notice Registrar: {recordTransactionReport} for several deals; a failing item emits {ItemFailed}
    /// and the others apply.
    function recordTransactionReports(uint256[] calldata dealIds, bytes32[] calldata receipts)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        _sameLength(dealIds.length, receipts.length);
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(dealIds[i], abi.encodeCall(this.recordTransactionReportItem, (dealIds[i], receipts[i])));
        }
    }

    /// @notice Batch item of {recordTransactionReports}; only this contract may call it.
    function recordTransactionReportItem(uint256 dealId, bytes32 receipt) external {
        _onlySelf();
        _recordTransactionReport(dealId, receipt);
    }

    function _recordTransactionReport(uint256 dealId, bytes32 receipt) private {
        Deal storage d = _deal(dealId);
        State s = d.state;
        if (s < State.Signed || s >= State.Settled) revert DealNotActive(dealId, s);
        uint8 flags = d.flags;
        if (flags & REPORTED != 0) revert AlreadyReported(dealId);
        d.flags = flags | REPORTED;
        emit TransactionReported(dealId, receipt);
    }

    /// @notice The parcel's most recent signed deal (0 if none); while live, no other deal can be signed.
    function contractedDeal(bytes32 parcelId) external view returns (uint256) {
        return _contractedDeal[parcelId];
    }

    /// @notice Whether the deal's transaction report was recorded.
    function reported(uint256 dealId) external view returns (bool) {
        return _deal(dealId).flags & REPORTED != 0;
    }

    /// @notice Buyer, seller or the deal's broker asks for registration of a funded deal.
    function requestRegistration(uint256 dealId) external {
        _requestRegistration(msg.sender, dealId);
    }

    /// @notice {requestRegistration} for several deals, each by the rule of the single call (the caller must
    /// be the deal's buyer, seller or broker). A failing item emits {ItemFailed} and the others apply.
    function requestRegistrations(uint256[] calldata dealIds) external {
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(dealIds[i], abi.encodeCall(this.requestRegistrationItem, (msg.sender, dealIds[i])));
        }
    }

    /// @notice Batch item of {requestRegistrations}; only this contract may call it.
    function requestRegistrationItem(address caller, uint256 dealId) external {
        _onlySelf();
        _requestRegistration(caller, dealId);
    }

    function _requestRegistration(address caller, uint256 dealId) private {
        Deal storage d = _deal(dealId);
        // the broker (who files it in the pipeline) first: its slot is one read, buyer and seller two more
        if (caller != d.broker && caller != d.buyer && caller != d.seller) revert NotParty(dealId, caller);
        if (d.state != State.Funded) revert DealNotInState(dealId, State.Funded, d.state);
        d.state = State.RegistrationRequested;
        emit RegistrationRequested(dealId, caller);
    }

    /// @notice Registrar: settle in one transaction. Pays off and discharges every active mortgage on the
    /// parcel at the payoff its creditor stated in the LoanBook, moves ownership to the buyer, registers the
    /// buyer's lender's mortgage (if any) and credits the rest of the price to the seller.
    /// @param registrationReceipt receipt number used for all register entries of this settlement.
    /// @param taxReceipt acquisition-tax receipt.
    function settle(uint256 dealId, bytes32 registrationReceipt, bytes32 taxReceipt)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        _settle(dealId, registrationReceipt, taxReceipt);
    }

    /// @notice Registrar: {settle} several deals, each all or nothing; a failing item emits {ItemFailed} and
    /// the others settle.
    function settleMany(
        uint256[] calldata dealIds,
        bytes32[] calldata registrationReceipts,
        bytes32[] calldata taxReceipts
    ) external onlyRole(REGISTRAR_ROLE) {
        _sameLength(dealIds.length, registrationReceipts.length);
        _sameLength(dealIds.length, taxReceipts.length);
        for (uint256 i; i < dealIds.length; ++i) {
            _tryItem(
                dealIds[i], abi.encodeCall(this.settleItem, (dealIds[i], registrationReceipts[i], taxReceipts[i]))
            );
        }
    }

    /// @notice Batch item of {settleMany}; only this contract may call it.
    function settleItem(uint256 dealId, bytes32 registrationReceipt, bytes32 taxReceipt) external {
        _onlySelf();
        _settle(dealId, registrationReceipt, taxReceipt);
    }

    function _settle(uint256 dealId, bytes32 registrationReceipt, bytes32 taxReceipt) private {
        Deal storage d = _deal(dealId);
        if (d.state != State.RegistrationRequested) {
            revert DealNotInState(dealId, State.RegistrationRequested, d.state);
        }
        if (d.flags & REPORTED == 0) revert TransactionNotReported(dealId);
        bytes32 parcelId = d.parcelId;
        uint256[] memory mortgages = _checkTitle(dealId, parcelId, d.seller);
        (address[] memory creditors, uint256[] memory payoffs, uint256 payoffTotal) =
            _collectPayoffs(dealId, mortgages);
        uint256 price = uint256(d.deposit) + d.interim + d.balance;
        if (payoffTotal > price) revert ProceedsShort(dealId, price, payoffTotal);

        // Effects first (every credit), then the register and loan book writes (checks-effects-interactions).
        d.state = State.Settled;
        for (uint256 i; i < mortgages.length; ++i) {
            _credit(creditors[i], payoffs[i]);
            emit PayoffPaid(dealId, mortgages[i], creditors[i], payoffs[i]);
        }
        uint256 proceeds = price - payoffTotal;
        _credit(d.seller, proceeds);
        emit DealSettled(dealId, parcelId, registrationReceipt, taxReceipt, payoffTotal, proceeds);
        for (uint256 i; i < mortgages.length; ++i) {
            _land.settleDischarge(parcelId, mortgages[i], registrationReceipt);
        }
        _transferTitle(dealId, d, registrationReceipt);
    }

    /// @dev Seller still owns the parcel and nothing blocks it; returns the active mortgages.
    function _checkTitle(uint256 dealId, bytes32 parcelId, address seller)
        private
        view
        returns (uint256[] memory mortgages)
    {
        address owner;
        uint256 blockings;
        (owner, blockings, mortgages) = _land.title(parcelId);
        if (owner != seller) revert SellerNotOwner(parcelId, seller, owner);
        if (blockings != 0) revert ParcelBlocked(dealId, parcelId, blockings);
    }

    /// @dev Payoffs stated in the LoanBook for each active mortgage (all must be stated).
    function _collectPayoffs(uint256 dealId, uint256[] memory mortgages)
        private
        view
        returns (address[] memory creditors, uint256[] memory payoffs, uint256 payoffTotal)
    {
        uint256 n = mortgages.length;
        creditors = new address[](n);
        payoffs = new uint256[](n);
        if (n == 0) return (creditors, payoffs, 0);
        LoanBook book = _requireLoanBook();
        for (uint256 i; i < n; ++i) {
            (address creditor, uint256 amount) = book.payoff(dealId, mortgages[i]);
            if (creditor == address(0)) revert PayoffNotStated(dealId, mortgages[i]);
            creditors[i] = creditor;
            payoffs[i] = amount;
            payoffTotal += amount;
        }
    }

    /// @dev Ownership to the buyer and, with a loan, the lender's mortgage (debtor = buyer).
    function _transferTitle(uint256 dealId, Deal storage d, bytes32 receipt) private {
        bytes32 parcelId = d.parcelId;
        address buyer = d.buyer;
        _land.settleOwnershipTransfer(parcelId, d.seller, buyer, receipt);
        if (d.approvedLoan != 0) {
            LoanBook book = _loanBook;
            (uint256 entry,) = _land.settleMortgage(parcelId, d.lender, buyer, book.loan(dealId).maxSecured, receipt);
            book.recordSecured(dealId, entry);
        }
    }

    // ------------------------------------------------------------------ withdrawals

    /// @notice Withdraw all of the caller's claimable balance.
    function withdraw() external nonReentrant {
        uint256 amount = _claimable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _claimable[msg.sender] = 0;
        _totalClaimable -= amount;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice The DepositToken held in escrow.
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @notice The LandRegister.
    function landRegister() external view returns (LandRegister) {
        return _land;
    }

    /// @notice The LoanBook (zero until set).
    function loanBook() external view returns (LoanBook) {
        return _loanBook;
    }

    /// @notice The id the next opened deal will get.
    function nextDealId() external view returns (uint256) {
        return _nextDealId;
    }

    /// @notice The terms of a deal.
    function terms(uint256 dealId) external view returns (DealTerms memory t) {
        Deal storage d = _deal(dealId);
        t = DealTerms({
            parcelId: d.parcelId,
            seller: d.seller,
            buyer: d.buyer,
            price: uint256(d.deposit) + d.interim + d.balance,
            deposit: d.deposit,
            interim: d.interim,
            balance: d.balance,
            depositDeadline: d.depositDeadline,
            interimDeadline: d.interimDeadline,
            balanceDeadline: d.balanceDeadline,
            loanAmount: d.loanAmount,
            lender: d.lender
        });
    }

    /// @notice The state of a deal (None for an unknown id).
    function dealState(uint256 dealId) external view returns (State) {
        return _deals[dealId].state;
    }

    /// @notice The broker who opened the deal.
    function broker(uint256 dealId) external view returns (address) {
        return _deal(dealId).broker;
    }

    /// @notice Which parties have accepted the terms.
    function signatures(uint256 dealId) external view returns (bool buyerSigned, bool sellerSigned) {
        uint8 flags = _deal(dealId).flags;
        return (flags & BUYER_SIGNED != 0, flags & SELLER_SIGNED != 0);
    }

    /// @notice Amounts paid into the deal so far (history: stays after the deal ends).
    function payments(uint256 dealId)
        external
        view
        returns (uint256 deposit, uint256 interim, uint256 buyerBalance, uint256 loan)
    {
        Deal storage d = _deal(dealId);
        uint8 flags = d.flags;
        if (flags & DEPOSIT_PAID != 0) deposit = d.deposit;
        if (flags & INTERIM_PAID != 0) interim = d.interim;
        if (flags & BALANCE_PAID != 0) buyerBalance = d.balance - d.approvedLoan;
        if (flags & LOAN_DISBURSED != 0) loan = d.approvedLoan;
    }

    /// @notice The lender's decision as recorded here (approvedAmount 0 with decided = rejected).
    function loanDecision(uint256 dealId) external view returns (bool decided, uint256 approvedAmount) {
        Deal storage d = _deal(dealId);
        return (d.flags & LOAN_DECIDED != 0, d.approvedLoan);
    }

    /// @notice The buyer's part of the balance: balance - approved loan (balance - loanAmount before the decision).
    function buyerBalanceDue(uint256 dealId) external view returns (uint256) {
        Deal storage d = _deal(dealId);
        return d.balance - (d.flags & LOAN_DECIDED != 0 ? d.approvedLoan : d.loanAmount);
    }

    /// @notice Whether performance has begun (interim, buyer balance part or loan paid).
    function performanceBegun(uint256 dealId) external view returns (bool) {
        return _deal(dealId).flags & (INTERIM_PAID | BALANCE_PAID | LOAN_DISBURSED) != 0;
    }

    /// @notice Tokens the escrow currently holds for this deal (0 once it ended).
    function heldBy(uint256 dealId) external view returns (uint256) {
        Deal storage d = _deal(dealId);
        if (d.state >= State.Settled) return 0;
        (uint256 buyerPaid, uint256 loanPaid) = _paidBack(d, d.flags);
        return buyerPaid + loanPaid;
    }

    /// @notice Tokens `account` may withdraw.
    function claimable(address account) external view returns (uint256) {
        return _claimable[account];
    }

    /// @notice Sum of all claimable balances.
    function totalClaimable() external view returns (uint256) {
        return _totalClaimable;
    }

    /// @notice Deal data the LoanBook checks.
    function loanContext(uint256 dealId)
        external
        view
        returns (bytes32 parcelId, address buyer, address lender, uint256 loanAmount, State state)
    {
        Deal storage d = _deal(dealId);
        return (d.parcelId, d.buyer, d.lender, d.loanAmount, d.state);
    }

    /// @notice The EIP-712 digest `party` must sign now (with its current nonce) to accept deal `dealId`.
    function acceptTermsDigest(uint256 dealId, Party party, uint64 expiry) external view returns (bytes32) {
        Deal storage d = _deal(dealId);
        address signer = party == Party.Buyer ? d.buyer : d.seller;
        return _hashTypedDataV4(_acceptTermsHash(d, dealId, nonces(signer), expiry));
    }

    /// @notice The EIP-712 domain separator (name "DealEscrow", version "1", this chain, this contract).
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ internal

    function _deal(uint256 dealId) private view returns (Deal storage d) {
        d = _deals[dealId];
        if (d.state == State.None) revert UnknownDeal(dealId);
    }

    function _onlyLoanBook() private view {
        if (msg.sender != address(_loanBook) || msg.sender == address(0)) revert NotLoanBook(msg.sender);
    }

    function _requireLoanBook() private view returns (LoanBook book) {
        book = _loanBook;
        if (address(book) == address(0)) revert LoanBookNotSet();
    }

    function _toUint96(uint256 amount) private pure returns (uint96) {
        if (amount > type(uint96).max) revert AmountTooLarge(amount);
        return uint96(amount);
    }

    function _checkDeadlines(uint64 depositDeadline, uint64 interimDeadline, uint64 balanceDeadline, uint256 interim)
        private
        view
    {
        bool ok = depositDeadline >= block.timestamp && balanceDeadline <= type(uint40).max;
        if (interim == 0) {
            ok = ok && interimDeadline == 0 && depositDeadline < balanceDeadline;
        } else {
            ok = ok && depositDeadline < interimDeadline && interimDeadline < balanceDeadline;
        }
        if (!ok) revert InvalidDeadlines(depositDeadline, interimDeadline, balanceDeadline);
    }

    function _checkDeadline(uint256 dealId, uint40 deadline) private view {
        if (block.timestamp > deadline) revert DeadlinePassed(dealId, deadline, block.timestamp);
    }

    /// @dev Mark `flag` paid, advance the state, emit, then pull `amount` from the buyer.
    function _receive(address caller, uint256 dealId, Deal storage d, uint8 flag, Payment payment, uint256 amount)
        private
    {
        // Paying begins performance and ends §565 cancellation: only the buyer, or its broker acting on
        // the terms the buyer signed, may pull the buyer's money in; a seller cannot force it early.
        if (caller != d.buyer && caller != d.broker) revert NotParty(dealId, caller);
        uint8 flags = d.flags | flag;
        d.flags = flags;
        State s = _stage(d, flags);
        d.state = s;
        address buyer = d.buyer;
        emit PaymentReceived(dealId, payment, buyer, amount, s);
        _token.safeTransferFrom(buyer, address(this), amount);
    }

    /// @dev The furthest stage a live, signed deal has reached given its payment flags.
    function _stage(Deal storage d, uint8 flags) private view returns (State) {
        if (flags & DEPOSIT_PAID == 0) return State.Signed;
        bool hasInterim = d.interim != 0;
        if (hasInterim && flags & INTERIM_PAID == 0) return State.DepositPaid;
        State base = hasInterim ? State.InterimPaid : State.DepositPaid;
        if (d.loanAmount != 0 && flags & LOAN_DECIDED == 0) return base;
        uint256 approved = d.approvedLoan;
        bool balanceDone = flags & BALANCE_PAID != 0 || d.balance == approved;
        bool loanDone = approved == 0 || flags & LOAN_DISBURSED != 0;
        if (balanceDone && loanDone) return State.Funded;
        return approved != 0 ? State.LoanApproved : base;
    }

    /// @dev What the buyer side paid in (deposit + interim + buyer balance part) and what the lender disbursed.
    function _paidBack(Deal storage d, uint8 flags) private view returns (uint256 buyerPaid, uint256 lenderPaid) {
        if (flags & DEPOSIT_PAID != 0) buyerPaid = d.deposit;
        if (flags & INTERIM_PAID != 0) buyerPaid += d.interim;
        if (flags & BALANCE_PAID != 0) buyerPaid += d.balance - d.approvedLoan;
        if (flags & LOAN_DISBURSED != 0) lenderPaid = d.approvedLoan;
    }

    function _loanRequested(uint256 dealId) private view returns (bool) {
        LoanBook book = _loanBook;
        return address(book) != address(0) && book.loan(dealId).status != LoanBook.Status.None;
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _claimable[account] += amount;
        _totalClaimable += amount;
    }

    /// @dev Reverts InvalidSigner unless `signature` over the typed-data struct hash is `signer`'s.
    function _checkSigner(uint256 dealId, bytes32 structHash, address signer, bytes calldata signature)
        private
        view
    {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) revert InvalidSigner(dealId, signer, recovered);
    }

    function _acceptTermsHash(Deal storage d, uint256 dealId, uint256 nonce, uint64 expiry)
        private
        view
        returns (bytes32)
    {
        return keccak256(
            bytes.concat(
                abi.encode(
                    ACCEPT_TERMS_TYPEHASH,
                    dealId,
                    d.parcelId,
                    d.seller,
                    d.buyer,
                    uint256(d.deposit) + d.interim + d.balance,
                    d.deposit,
                    d.interim,
                    d.balance
                ),
                abi.encode(
                    uint64(d.depositDeadline),
                    uint64(d.interimDeadline),
                    uint64(d.balanceDeadline),
                    d.loanAmount,
                    d.lender,
                    nonce,
                    expiry
                )
            )
        );
    }
}
